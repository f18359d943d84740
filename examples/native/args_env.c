/* Prints each argument, then each environment variable, one per line. */
#include <stdio.h>
extern char **environ;
int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) puts(argv[i]);
    for (char **e = environ; *e; e++) puts(*e);
    return 0;
}

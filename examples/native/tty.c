/* Reports whether stdin is a terminal, and which. Exits 0 when it is. */
#include <stdio.h>
#include <unistd.h>
int main(void) {
    if (isatty(0)) { printf("tty: %s\n", ttyname(0)); return 0; }
    puts("tty: none");
    return 1;
}

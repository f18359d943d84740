/* syscall NR [ARG...]: makes system call NR with up to five integer ARGs
   and prints "ok" or "errno N (description)". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: syscall NR [ARG...]\n"); return 2; }
    long a[5] = {0};
    for (int i = 2; i < argc && i < 7; i++) a[i - 2] = strtol(argv[i], 0, 0);
    long r = syscall(strtol(argv[1], 0, 0), a[0], a[1], a[2], a[3], a[4]);
    if (r < 0) printf("errno %d (%s)\n", errno, strerror(errno));
    else printf("ok\n");
    return 0;
}

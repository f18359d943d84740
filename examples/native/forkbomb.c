/* forkbomb [N]: forks N (default 200) sleeping children as fast as it can,
   reports how many forks succeeded and how many the kernel refused, then
   kills the children and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    pid_t *kids = calloc(n, sizeof *kids);
    int ok = 0, refused = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) { pause(); _exit(0); }
        if (p < 0) refused++; else kids[ok++] = p;
    }
    printf("forked %d, refused %d\n", ok, refused);
    fflush(stdout);
    for (int i = 0; i < ok; i++) kill(kids[i], SIGKILL);
    while (wait(NULL) > 0) {}
    return 0;
}

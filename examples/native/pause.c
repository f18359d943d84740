/* pause: a pod sandbox's init, as Kubernetes' pause does. Holds the pod's
 * namespaces, reaps the zombies a shared pid namespace hands it, and exits
 * 0 on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void) {
    struct sigaction s = {0};
    s.sa_handler = stop;
    sigaction(SIGINT, &s, NULL);
    sigaction(SIGTERM, &s, NULL);
    s.sa_handler = reap;
    s.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &s, NULL);
    for (;;)
        pause();
}

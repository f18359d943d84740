/* devices PATH b|c MAJOR MINOR: makes the device node PATH (unless it
   exists) and opens it read-only, then opens /dev/null read-write. Prints
   one line per step: "mknod: ok", "open: Operation not permitted", ... */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
static void report(const char *step, int rc) {
    printf("%s: %s\n", step, rc < 0 ? strerror(errno) : "ok");
}
int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: devices PATH b|c MAJOR MINOR\n"); return 2; }
    struct stat st;
    if (stat(argv[1], &st) == 0) {
        printf("mknod: exists\n");
    } else {
        mode_t kind = argv[2][0] == 'b' ? S_IFBLK : S_IFCHR;
        report("mknod", mknod(argv[1], kind | 0600, makedev(atoi(argv[3]), atoi(argv[4]))));
    }
    int fd = open(argv[1], O_RDONLY);
    report("open", fd);
    if (fd >= 0) close(fd);
    fd = open("/dev/null", O_RDWR);
    report("null", fd);
    if (fd >= 0) close(fd);
    return 0;
}

/* write [PATH]: creates PATH (default /probe); exits 1 when it can't. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/probe";
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) { printf("write %s: %s\n", path, strerror(errno)); return 1; }
    write(fd, "x", 1);
    close(fd);
    printf("wrote %s\n", path);
    return 0;
}

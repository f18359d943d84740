/* Prints the uid, gid, supplementary groups and hostname it runs with. */
#include <stdio.h>
#include <unistd.h>
int main(void) {
    gid_t groups[64];
    int n = getgroups(64, groups);
    char host[256] = "";
    gethostname(host, sizeof host);
    printf("uid=%d gid=%d groups=", (int)getuid(), (int)getgid());
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)groups[i]);
    printf("\nhostname=%s\n", host);
    return 0;
}

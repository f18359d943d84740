/* Allocates and touches memory 1 MiB at a time until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    for (unsigned long mib = 1;; mib++) {
        char *p = malloc(1 << 20);
        if (!p) { puts("malloc failed"); return 1; }
        memset(p, 1, 1 << 20);
        if (mib % 16 == 0) { printf("%lu MiB\n", mib); fflush(stdout); }
    }
}

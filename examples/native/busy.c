/* Says it started, then spins forever. */
#include <stdio.h>
int main(void) {
    puts("spinning");
    fflush(stdout);
    for (volatile unsigned long i = 0;; i++) {}
}

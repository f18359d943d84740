/* Prints a greeting on stdout. */
#include <stdio.h>
int main(void) { puts("Hello from native!"); return 0; }

/* sleep SECONDS: sleeps, then exits 0. Handles no signals itself. */
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) { sleep(argc > 1 ? atoi(argv[1]) : 3600); return 0; }

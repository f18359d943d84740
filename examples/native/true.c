/* Does nothing, successfully: the benchmark payload. */
int main(void) { return 0; }

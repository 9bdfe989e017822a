/* A C program with a known hot function for edgeprof's native (perf) code profile test:
 * hot_native() does four times the work of cold_native(), forever (or for argv[1] s). */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void hot_native(void) {
    for (unsigned long i = 0; i < 4000000UL; i++) sink += i * i;
}

__attribute__((noinline)) void cold_native(void) {
    for (unsigned long i = 0; i < 1000000UL; i++) sink += i * i;
}

int main(int argc, char **argv) {
    time_t end = time(NULL) + (argc > 1 ? atol(argv[1]) : 3600);
    while (time(NULL) < end) {
        hot_native();
        cold_native();
    }
    return 0;
}

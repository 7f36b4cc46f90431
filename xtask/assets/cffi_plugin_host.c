/* A C program calling the cffi plugin's exported function; the plugin
   starts PyPy on the first call. Used by `cargo xtask verify` and
   docs/embedding-c.md. */
#include <stdio.h>

int pypy_embed_add(int, int);

int main(void) {
    int sum = pypy_embed_add(40, 2);
    printf("pypy-plugin-ok %d\n", sum);
    return sum == 42 ? 0 : 1;
}

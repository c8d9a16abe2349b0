// float32 GEMM on OpenBLAS against oneDNN's float32 matmul at a training step's shapes (issue 20:
// "measure fp32 on both libraries at the step's shapes"), one thread each, as elle calls them
// (one single-threaded library call per piece). Built and run by scripts/gemm_libraries.sh.
//
//   gemm_libraries L D V T B      e.g. 6 384 16384 128 8 (GPT: qkv, projections, MLP, head;
//                                 forward, input gradient and weight gradient of each)
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "../Sources/CDNNL/shim.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

// C (m x n) = op(A) op(B), row-major; ta/tb: operand stored transposed.
typedef struct { const char *name; int m, n, k, ta, tb; } shape;

static double best_seconds(void (*run)(void *), void *ctx, double flops) {
    run(ctx);
    double best = 1e30;
    int reps = flops > 4e9 ? 3 : 10;
    for (int r = 0; r < reps; r++) { double t0 = now(); run(ctx); double t = now() - t0; if (t < best) best = t; }
    return best;
}

typedef struct { shape s; float *a, *b, *c; elle_matmul mm; dnnl_stream_t stream; } job;

static void run_blas(void *p) {
    job *j = p; shape s = j->s;
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                1.0f, j->a, s.ta ? s.m : s.k, j->b, s.tb ? s.k : s.n, 0.0f, j->c, s.n);
}

static void run_dnnl(void *p) {
    job *j = p;
    if (elle_matmul_run(&j->mm, j->stream, j->a, j->b, j->c)) { fprintf(stderr, "oneDNN run failed\n"); exit(1); }
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s L D V T B\n", argv[0]); return 2; }
    int d = atoi(argv[2]), v = atoi(argv[3]), n = atoi(argv[4]) * atoi(argv[5]);
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    dnnl_engine_t engine; dnnl_stream_t stream;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) || dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)) return 1;
    int outs[] = {3 * d, d, 4 * d, d, v}, ins[] = {d, d, d, 4 * d, d};
    const char *names[] = {"qkv", "attn.proj", "fc", "fc.proj", "head"};
    double total_blas = 0, total_dnnl = 0, total_flops = 0;
    printf("| product | M x N x K | OpenBLAS GFLOP/s | oneDNN f32 GFLOP/s | oneDNN / OpenBLAS |\n|---|---|---|---|---|\n");
    for (int p = 0; p < 5; p++) {
        int o = outs[p], i = ins[p];
        // forward Y = X W^T; input gradient dX = dY W; weight gradient dW = dY^T X
        shape shapes[3] = {{"forward", n, o, i, 0, 1}, {"input grad", n, i, o, 0, 0}, {"weight grad", o, i, n, 1, 0}};
        for (int q = 0; q < 3; q++) {
            shape s = shapes[q];
            job j = {s, malloc(sizeof(float) * s.m * s.k), malloc(sizeof(float) * s.k * s.n), malloc(sizeof(float) * s.m * s.n)};
            for (long x = 0; x < (long)s.m * s.k; x++) j.a[x] = (float)((x * 7919) % 1000) / 1000 - 0.5f;
            for (long x = 0; x < (long)s.k * s.n; x++) j.b[x] = (float)((x * 104729) % 1000) / 1000 - 0.5f;
            j.stream = stream;
            int64_t ars = s.ta ? 1 : s.k, acs = s.ta ? s.m : 1, brs = s.tb ? 1 : s.n, bcs = s.tb ? s.k : 1;
            if (elle_matmul_create(&j.mm, engine, dnnl_f32, s.m, s.n, s.k, ars, acs, brs, bcs, s.n, 1.0f, 0.0f)) return 1;
            double flops = 2.0 * s.m * s.n * s.k;
            double tb = best_seconds(run_blas, &j, flops), td = best_seconds(run_dnnl, &j, flops);
            total_blas += tb; total_dnnl += td; total_flops += flops;
            printf("| %s %s | %d x %d x %d | %.1f | %.1f (%s) | %.2f |\n", names[p], s.name, s.m, s.n, s.k,
                   flops / tb / 1e9, flops / td / 1e9, j.mm.implementation, tb / td);
            free(j.a); free(j.b); free(j.c);
        }
    }
    printf("| all (one layer's products + head) | | %.1f | %.1f | %.2f |\n", total_flops / total_blas / 1e9,
           total_flops / total_dnnl / 1e9, total_blas / total_dnnl);
    return 0;
}

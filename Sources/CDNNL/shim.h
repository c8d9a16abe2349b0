// The only header Swift imports for oneDNN (Debian's libdnnl-dev 2.6: /usr/include/oneapi/dnnl,
// no pkg-config file). elle uses one primitive of its C API, matmul, for the products of mixed
// precision; the helpers below keep the C structs (dims arrays, exec args) out of Swift.
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

/// A matmul primitive with its three memory objects (data handles set per call) and the name of
/// the implementation oneDNN chose ("brg:avx512_core_bf16", "gemm:jit", ...).
typedef struct {
    dnnl_primitive_t primitive;
    dnnl_memory_t a, b, c;
    char implementation[64];
} elle_matmul;

/// C (m x n float32, row stride ldc) = alpha * A B + beta * C, where A (m x k) and B (k x n) have
/// element type `type` and the given strides (a transposed operand has row stride 1).
static inline dnnl_status_t elle_matmul_create(
    elle_matmul *out, dnnl_engine_t engine, dnnl_data_type_t type, int64_t m, int64_t n, int64_t k,
    int64_t a_row_stride, int64_t a_col_stride, int64_t b_row_stride, int64_t b_col_stride,
    int64_t ldc, float alpha, float beta)
{
    memset(out, 0, sizeof *out);
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t a_dims = {m, k}, a_strides = {a_row_stride, a_col_stride};
    dnnl_dims_t b_dims = {k, n}, b_strides = {b_row_stride, b_col_stride};
    dnnl_dims_t c_dims = {m, n}, c_strides = {ldc, 1};
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, type, a_strides))) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, type, b_strides))) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides))) return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md))) return s;
    dnnl_primitive_attr_t attr;
    if ((s = dnnl_primitive_attr_create(&attr))) return s;
    dnnl_post_ops_t post_ops = NULL;
    if (alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    if (!s && beta != 0.0f) {
        if (!(s = dnnl_post_ops_create(&post_ops)) && !(s = dnnl_post_ops_append_sum(post_ops, beta)))
            s = dnnl_primitive_attr_set_post_ops(attr, post_ops);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (!s) s = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    dnnl_primitive_attr_destroy(attr);
    if (s) return s;
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    strncpy(out->implementation, impl, sizeof out->implementation - 1);
    s = dnnl_primitive_create(&out->primitive, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s) return s;
    if ((s = dnnl_memory_create(&out->a, &a_md, engine, DNNL_MEMORY_NONE))) return s;
    if ((s = dnnl_memory_create(&out->b, &b_md, engine, DNNL_MEMORY_NONE))) return s;
    return dnnl_memory_create(&out->c, &c_md, engine, DNNL_MEMORY_NONE);
}

/// Runs the product on `stream` (the calling thread) and waits for it.
static inline dnnl_status_t elle_matmul_run(const elle_matmul *mm, dnnl_stream_t stream, const void *a,
                                            const void *b, float *c)
{
    dnnl_memory_set_data_handle(mm->a, (void *)a);
    dnnl_memory_set_data_handle(mm->b, (void *)b);
    dnnl_memory_set_data_handle(mm->c, c);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, mm->a}, {DNNL_ARG_WEIGHTS, mm->b}, {DNNL_ARG_DST, mm->c}};
    dnnl_status_t s = dnnl_primitive_execute(mm->primitive, stream, 3, args);
    return s ? s : dnnl_stream_wait(stream);
}

static inline void elle_matmul_destroy(elle_matmul *mm)
{
    if (mm->a) dnnl_memory_destroy(mm->a);
    if (mm->b) dnnl_memory_destroy(mm->b);
    if (mm->c) dnnl_memory_destroy(mm->c);
    if (mm->primitive) dnnl_primitive_destroy(mm->primitive);
}

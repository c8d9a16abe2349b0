// The whole MPI surface elle's Swift code sees: plain C types only.
//
// Open MPI defines MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE... as macros that expand to
// addresses of internal globals, which Swift's C importer cannot import. Every call here uses the
// world communicator and returns an MPI error code (0 = success); cmpi_error_string turns a code
// into MPI's own message.
//
// Collectives are non-blocking only: each `cmpi_i*` call starts one and hands back a request that
// `cmpi_test` polls and `cmpi_wait` blocks on. A blocking collective is start + wait; elle's Swift
// side waits by polling so its watchdog can end a job whose rank stopped responding.
//
// Every function that enters MPI holds one mutex for its call (cmpi_abort excepted), so several
// threads may call the shim when MPI granted MPI_THREAD_SERIALIZED: elle's training thread starts
// gradient all-reduces while a helper thread polls them.
#ifndef CMPI_H
#define CMPI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// MPI_THREAD_* levels.
typedef enum {
    CMPI_THREAD_SINGLE = 0,
    CMPI_THREAD_FUNNELED = 1,
    CMPI_THREAD_SERIALIZED = 2,
    CMPI_THREAD_MULTIPLE = 3,
} cmpi_thread_level;

/// Element types: MPI_FLOAT, MPI_DOUBLE, MPI_INT64_T, MPI_UINT64_T, MPI_BYTE, and bf16 (its bits
/// as MPI_UINT16_T).
typedef enum {
    CMPI_FLOAT32 = 0,
    CMPI_FLOAT64 = 1,
    CMPI_INT64 = 2,
    CMPI_UINT64 = 3,
    CMPI_BYTE = 4,
    CMPI_BF16 = 5,
} cmpi_datatype;

/// Reductions: MPI_SUM, MPI_MAX, MPI_MIN, and CMPI_SUM_BF16 over CMPI_BF16 values (a user
/// operation: both operands widened to float, added, the sum rounded to nearest even bf16, a NaN
/// kept quiet: elle's own rounding, so two ranks' sum has the bits elle computes itself).
typedef enum {
    CMPI_SUM = 0,
    CMPI_MAX = 1,
    CMPI_MIN = 2,
    CMPI_SUM_BF16 = 3,
} cmpi_op;

/// An operation in flight: one MPI_Request per chunk. Freed by cmpi_test/cmpi_wait once complete
/// (they set the caller's pointer to NULL) or by cmpi_cancel.
typedef struct cmpi_request cmpi_request;

/// MPI_Init_thread at `required`; `provided` receives the level MPI granted. Sets
/// MPI_ERRORS_RETURN on the world communicator (failures come back as codes, not aborts) and
/// finds this process's rank among those on its node.
int cmpi_init(cmpi_thread_level required, cmpi_thread_level *provided);
int cmpi_finalize(void);
/// 1 if MPI_Init has run and MPI_Finalize has not.
int cmpi_is_initialized(void);
int cmpi_rank(int *rank);
int cmpi_size(int *size);
/// Rank and size within this node (MPI_COMM_TYPE_SHARED), computed once by cmpi_init.
int cmpi_local_rank(int *local_rank, int *local_size);
/// MPI_Get_processor_name into `buffer` (NUL-terminated, truncated to `capacity`).
int cmpi_processor_name(char *buffer, int capacity);
/// Ends every rank of the job with `code` (MPI_Abort on the world communicator).
void cmpi_abort(int code);
/// Writes MPI's message for `code` into `buffer` (NUL-terminated, truncated to `capacity`).
void cmpi_error_string(int code, char *buffer, int capacity);

/// Largest element count one MPI call carries (MPI counts are `int`). Defaults to 2^30; longer
/// buffers are split into several calls. Tests lower it to exercise the splitting.
int64_t cmpi_chunk_elements(void);
void cmpi_set_chunk_elements(int64_t elements);

/// In-place all-reduce of `count` elements (MPI_IN_PLACE), chunked.
int cmpi_iallreduce(void *buffer, int64_t count, cmpi_datatype type, cmpi_op op, cmpi_request **request);
/// Broadcast of `count` elements from `root`, chunked.
int cmpi_ibcast(void *buffer, int64_t count, cmpi_datatype type, int root, cmpi_request **request);
int cmpi_ibarrier(cmpi_request **request);
/// Gathers `count` elements from every rank into `receive` on `root` (size * count elements,
/// rank order; ignored elsewhere). Small buffers: `count` must fit in an int.
int cmpi_igather(const void *send, void *receive, int64_t count, cmpi_datatype type, int root,
                 cmpi_request **request);
/// Like cmpi_igather, but every rank receives the result.
int cmpi_iallgather(const void *send, void *receive, int64_t count, cmpi_datatype type,
                    cmpi_request **request);
/// Block k of `count` elements of `send` goes to rank k, which receives it as block r (the
/// sender's rank) of `receive` (size * count elements each). `count` must fit in an int.
int cmpi_ialltoall(const void *send, void *receive, int64_t count, cmpi_datatype type,
                   cmpi_request **request);
/// Point-to-point messages (the watchdog's heartbeats).
int cmpi_isend(const void *buffer, int64_t count, cmpi_datatype type, int destination, int tag,
               cmpi_request **request);
int cmpi_irecv(void *buffer, int64_t count, cmpi_datatype type, int source, int tag,
               cmpi_request **request);

/// Sets `*done` to 1 (and frees the request, setting `*request` to NULL) once every part of it
/// has completed; otherwise `*done` is 0. Drives MPI's progress engine.
int cmpi_test(cmpi_request **request, int *done);
/// Blocks (polling, releasing the mutex between polls) until the request completes, then frees it.
int cmpi_wait(cmpi_request **request);
/// Cancels a pending receive (or lets a pending send finish on its own) and frees the request.
int cmpi_cancel(cmpi_request **request);

#ifdef __cplusplus
}
#endif
#endif

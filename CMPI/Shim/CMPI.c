#include "CMPI.h"
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

struct cmpi_request {
    int is_receive;  // cancellable point-to-point receive
    int count;
    MPI_Request parts[];  // one per chunk
};

// Every call that enters MPI holds this mutex (the public functions at the end of this file
// wrap the unlocked ones), so the shim may be called from several threads, e.g. a training
// thread starting collectives while a helper thread polls them, with MPI granting only
// MPI_THREAD_SERIALIZED. cmpi_abort alone does not take it: it must work whatever else runs.
static pthread_mutex_t mpi_mutex = PTHREAD_MUTEX_INITIALIZER;

static int local_rank = 0;
static int local_size = 1;
// 2^30 rather than INT_MAX keeps every chunk a multiple of any element size's alignment.
static int64_t chunk_elements = (int64_t)1 << 30;

static MPI_Datatype datatype(cmpi_datatype type) {
    switch (type) {
    case CMPI_FLOAT32: return MPI_FLOAT;
    case CMPI_FLOAT64: return MPI_DOUBLE;
    case CMPI_INT64: return MPI_INT64_T;
    case CMPI_UINT64: return MPI_UINT64_T;
    case CMPI_BYTE: return MPI_BYTE;
    case CMPI_BF16: return MPI_UINT16_T;
    }
    return MPI_DATATYPE_NULL;
}

static size_t element_size(cmpi_datatype type) {
    switch (type) {
    case CMPI_FLOAT32: return 4;
    case CMPI_FLOAT64: case CMPI_INT64: case CMPI_UINT64: return 8;
    case CMPI_BYTE: return 1;
    case CMPI_BF16: return 2;
    }
    return 0;
}

// bf16 as elle rounds it (Sources/Tensors/BFloat16.swift, bf16Bits): nearest even, NaN quiet.
static uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (x != x) return (uint16_t)((u | 0x00400000u) >> 16);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static float bf16_widen(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = bf16_round(bf16_widen(a[i]) + bf16_widen(b[i]));
}

static MPI_Op sum_bf16 = MPI_OP_NULL;

static MPI_Op operation(cmpi_op op) {
    switch (op) {
    case CMPI_SUM: return MPI_SUM;
    case CMPI_MAX: return MPI_MAX;
    case CMPI_MIN: return MPI_MIN;
    case CMPI_SUM_BF16: return sum_bf16;
    }
    return MPI_OP_NULL;
}

static int thread_level(cmpi_thread_level level) {
    switch (level) {
    case CMPI_THREAD_SINGLE: return MPI_THREAD_SINGLE;
    case CMPI_THREAD_FUNNELED: return MPI_THREAD_FUNNELED;
    case CMPI_THREAD_SERIALIZED: return MPI_THREAD_SERIALIZED;
    case CMPI_THREAD_MULTIPLE: return MPI_THREAD_MULTIPLE;
    }
    return MPI_THREAD_SINGLE;
}

static cmpi_thread_level from_thread_level(int level) {
    if (level == MPI_THREAD_MULTIPLE) return CMPI_THREAD_MULTIPLE;
    if (level == MPI_THREAD_SERIALIZED) return CMPI_THREAD_SERIALIZED;
    if (level == MPI_THREAD_FUNNELED) return CMPI_THREAD_FUNNELED;
    return CMPI_THREAD_SINGLE;
}

static cmpi_request *new_request(int parts, int is_receive) {
    cmpi_request *request = malloc(sizeof(cmpi_request) + (size_t)parts * sizeof(MPI_Request));
    if (request == NULL) return NULL;
    request->is_receive = is_receive;
    request->count = 0;
    return request;
}

/// A later chunk failed to start: the parts already started cannot be completed without the
/// matching calls on other ranks (which may never come), so they are left to MPI and the job is
/// expected to end on the error returned.
static int fail(cmpi_request *request, int code) {
    free(request);
    return code;
}

static int chunks(int64_t count) {
    return count <= 0 ? 1 : (int)((count + chunk_elements - 1) / chunk_elements);
}

static int unlocked_init(cmpi_thread_level required, cmpi_thread_level *provided) {
    // Open MPI 4.1's non-blocking all-reduce (coll/libnbc) picks a binomial or recursive-doubling
    // algorithm by default, 2.5x slower than the blocking path on gradient-sized buffers; its ring
    // algorithm matches the blocking one (67 MB on 2 ranks here: 357 ms default, 158 ms ring,
    // 142 ms blocking). A value the user set in the environment wins; other MPIs ignore it.
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int granted = 0;
    int rc = MPI_Init_thread(NULL, NULL, thread_level(required), &granted);
    if (rc != MPI_SUCCESS) return rc;
    *provided = from_thread_level(granted);
    rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Op_create(bf16_sum, 1, &sum_bf16);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm node;
    rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    return MPI_Comm_free(&node);
}

static int unlocked_finalize(void) {
    if (sum_bf16 != MPI_OP_NULL) MPI_Op_free(&sum_bf16);
    return MPI_Finalize();
}

static int unlocked_is_initialized(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

static int unlocked_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
static int unlocked_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

int cmpi_local_rank(int *rank, int *size) {
    *rank = local_rank;
    *size = local_size;
    return MPI_SUCCESS;
}

static int unlocked_processor_name(char *buffer, int capacity) {
    if (capacity <= 0) return MPI_ERR_ARG;
    char name[MPI_MAX_PROCESSOR_NAME];
    int length = 0;
    int rc = MPI_Get_processor_name(name, &length);
    if (rc != MPI_SUCCESS) return rc;
    strncpy(buffer, name, (size_t)capacity - 1);
    buffer[capacity - 1] = '\0';
    return MPI_SUCCESS;
}

void cmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

void cmpi_error_string(int code, char *buffer, int capacity) {
    if (capacity <= 0) return;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, message, &length) != MPI_SUCCESS) {
        strncpy(buffer, "unknown MPI error", (size_t)capacity - 1);
    } else {
        strncpy(buffer, message, (size_t)capacity - 1);
    }
    buffer[capacity - 1] = '\0';
}

int64_t cmpi_chunk_elements(void) { return chunk_elements; }

void cmpi_set_chunk_elements(int64_t elements) {
    chunk_elements = elements < 1 ? 1 : (elements > INT_MAX ? INT_MAX : elements);
}

static int unlocked_iallreduce(void *buffer, int64_t count, cmpi_datatype type, cmpi_op op, cmpi_request **request) {
    *request = NULL;
    if (count < 0) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(chunks(count), 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    char *p = buffer;
    int64_t done = 0;
    do {
        int n = (int)(count - done < chunk_elements ? count - done : chunk_elements);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, p + done * element_size(type), n, datatype(type),
                                operation(op), MPI_COMM_WORLD, &r->parts[r->count]);
        if (rc != MPI_SUCCESS) return fail(r, rc);
        r->count += 1;
        done += n;
    } while (done < count);
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_ibcast(void *buffer, int64_t count, cmpi_datatype type, int root, cmpi_request **request) {
    *request = NULL;
    if (count < 0) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(chunks(count), 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    char *p = buffer;
    int64_t done = 0;
    do {
        int n = (int)(count - done < chunk_elements ? count - done : chunk_elements);
        int rc = MPI_Ibcast(p + done * element_size(type), n, datatype(type), root, MPI_COMM_WORLD,
                            &r->parts[r->count]);
        if (rc != MPI_SUCCESS) return fail(r, rc);
        r->count += 1;
        done += n;
    } while (done < count);
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_ibarrier(cmpi_request **request) {
    *request = NULL;
    cmpi_request *r = new_request(1, 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_igather(const void *send, void *receive, int64_t count, cmpi_datatype type, int root,
                 cmpi_request **request) {
    *request = NULL;
    if (count < 0 || count > INT_MAX) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(1, 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Igather(send, (int)count, datatype(type), receive, (int)count, datatype(type), root,
                         MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_iallgather(const void *send, void *receive, int64_t count, cmpi_datatype type,
                    cmpi_request **request) {
    *request = NULL;
    if (count < 0 || count > INT_MAX) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(1, 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Iallgather(send, (int)count, datatype(type), receive, (int)count, datatype(type),
                            MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_ialltoall(const void *send, void *receive, int64_t count, cmpi_datatype type,
                    cmpi_request **request) {
    *request = NULL;
    if (count < 0 || count > INT_MAX) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(1, 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Ialltoall(send, (int)count, datatype(type), receive, (int)count, datatype(type),
                           MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_isend(const void *buffer, int64_t count, cmpi_datatype type, int destination, int tag,
               cmpi_request **request) {
    *request = NULL;
    if (count < 0 || count > INT_MAX) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(1, 0);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Isend(buffer, (int)count, datatype(type), destination, tag, MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_irecv(void *buffer, int64_t count, cmpi_datatype type, int source, int tag,
               cmpi_request **request) {
    *request = NULL;
    if (count < 0 || count > INT_MAX) return MPI_ERR_COUNT;
    cmpi_request *r = new_request(1, 1);
    if (r == NULL) return MPI_ERR_NO_MEM;
    int rc = MPI_Irecv(buffer, (int)count, datatype(type), source, tag, MPI_COMM_WORLD, &r->parts[0]);
    if (rc != MPI_SUCCESS) return fail(r, rc);
    r->count = 1;
    *request = r;
    return MPI_SUCCESS;
}

static int unlocked_test(cmpi_request **request, int *done) {
    *done = 1;
    cmpi_request *r = *request;
    if (r == NULL) return MPI_SUCCESS;
    int flag = 0;
    int rc = MPI_Testall(r->count, r->parts, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return rc;
    if (!flag) {
        *done = 0;
        return MPI_SUCCESS;
    }
    free(r);
    *request = NULL;
    return MPI_SUCCESS;
}

static int unlocked_cancel(cmpi_request **request) {
    cmpi_request *r = *request;
    if (r == NULL) return MPI_SUCCESS;
    int rc = MPI_SUCCESS;
    for (int i = 0; i < r->count; i++) {
        if (r->parts[i] == MPI_REQUEST_NULL) continue;
        if (r->is_receive) {
            MPI_Cancel(&r->parts[i]);
            rc = MPI_Wait(&r->parts[i], MPI_STATUS_IGNORE);
        } else {
            rc = MPI_Request_free(&r->parts[i]);
        }
    }
    free(r);
    *request = NULL;
    return rc;
}

// MARK: the public functions: each holds the MPI mutex for its call

int cmpi_init(cmpi_thread_level required, cmpi_thread_level *provided) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_init(required, provided);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_finalize(void) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_finalize();
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_is_initialized(void) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_is_initialized();
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_rank(int *rank) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_rank(rank);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_size(int *size) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_size(size);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_processor_name(char *buffer, int capacity) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_processor_name(buffer, capacity);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_iallreduce(void *buffer, int64_t count, cmpi_datatype type, cmpi_op op, cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_iallreduce(buffer, count, type, op, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_ibcast(void *buffer, int64_t count, cmpi_datatype type, int root, cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_ibcast(buffer, count, type, root, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_ibarrier(cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_ibarrier(request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_igather(const void *send, void *receive, int64_t count, cmpi_datatype type, int root,
                 cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_igather(send, receive, count, type, root, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_iallgather(const void *send, void *receive, int64_t count, cmpi_datatype type,
                    cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_iallgather(send, receive, count, type, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_ialltoall(const void *send, void *receive, int64_t count, cmpi_datatype type,
                   cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_ialltoall(send, receive, count, type, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_isend(const void *buffer, int64_t count, cmpi_datatype type, int destination, int tag,
               cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_isend(buffer, count, type, destination, tag, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_irecv(void *buffer, int64_t count, cmpi_datatype type, int source, int tag,
               cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_irecv(buffer, count, type, source, tag, request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_test(cmpi_request **request, int *done) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_test(request, done);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

int cmpi_cancel(cmpi_request **request) {
    pthread_mutex_lock(&mpi_mutex);
    int rc = unlocked_cancel(request);
    pthread_mutex_unlock(&mpi_mutex);
    return rc;
}

/// Polls rather than blocking inside MPI, so a helper thread polling other requests can go on.
int cmpi_wait(cmpi_request **request) {
    int done = 0;
    while (1) {
        int rc = cmpi_test(request, &done);
        if (rc != MPI_SUCCESS || done) return rc;
        sched_yield();
    }
}

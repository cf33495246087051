/*
 * A stand-in for libnvidia-ml.so.1 that the real pynvml (nvidia-ml-py) loads on machines without a
 * GPU, so jobcarbon's NVML sensor is tested through the real bindings (testbed/nvml_standin.py).
 *
 * State comes from a key=value text file: $NVML_STANDIN_CONFIG, else nvml-standin.conf next to this
 * library (slurmd scrubs the prolog's environment). The file is re-read whenever its inode, size or
 * mtime changes. Energy follows the programmed power exactly:
 *     energy_mj = energy_offset_mj + power_mw * (now_realtime - epoch_s)
 * Real drivers are not free: "cost_us.<function>=N" makes every call of that function burn N µs of
 * the caller's CPU (a busy wait on the thread's CPU clock), as an H200's energy counter burns 3.85 ms.
 * "calls_file=PATH" counts the calls of each function in a shared file (name[56], uint64 count
 * slots) that tests read while another process holds the library.
 * Utilisation follows the GPU's load: "load_dir=DIR" names a folder where a job that keeps a GPU busy
 * writes "<util %> <pid> [<memory MiB>]" to DIR/<minor number>; while that pid lives the GPU reports
 * that utilisation and memory, otherwise it is idle (0 %, `idle_mem_mib`). Without a load file the
 * GPU's `util_pct` and `mem_used_mib` keys apply (tests program them directly).
 * Signatures and struct layouts follow nvml.h as mirrored by pynvml.py (nvidia-ml-py 13.x).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 16
#define MAX_MIGS 8
#define STR_LEN 96
#define MAX_COSTS 16
#define CALL_SLOTS 64
#define CALL_NAME 56

typedef struct {
    char uuid[STR_LEN];
    char name[STR_LEN];
    unsigned int slices;
} mig_t;

typedef struct {
    char uuid[STR_LEN];
    char name[STR_LEN];
    char pci_bus_id[32];
    unsigned int minor;
    unsigned long long power_mw;
    unsigned long long energy_offset_mj;
    int energy_ret; /* 0: counter works; 3: NOT_SUPPORTED; anything else: that error */
    int power_ret;
    unsigned int max_mig; /* 0: not MIG capable */
    unsigned int util_pct, mem_used_mib, mem_total_mib;
    int util_ret;
    int mig_count;
    mig_t migs[MAX_MIGS];
} gpu_t;

typedef struct {
    char function[CALL_NAME];
    long cost_us;
} cost_t;

typedef struct {
    char name[CALL_NAME];
    unsigned long long count;
} call_slot_t;

typedef struct {
    double epoch_s;
    int cost_count;
    cost_t costs[MAX_COSTS];
    char calls_file[PATH_MAX];
    char driver_version[STR_LEN];
    char load_dir[PATH_MAX];
    int init_ret;
    int gpu_count;
    gpu_t gpus[MAX_GPUS];
} state_t;

/* Opaque handles are pointers into this table, so they stay valid across re-reads. */
typedef struct nvmlDevice_st {
    int gpu;
    int mig; /* -1 for the whole GPU */
} handle_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount;
    unsigned int sharedEncoderCount, sharedJpegCount, sharedOfaCount;
    unsigned int gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static state_t state;
static int loaded; /* state holds a parsed file */
static struct stat loaded_stat;
static char loaded_path[PATH_MAX];
static int init_refcount;
static handle_t handles[MAX_GPUS][MAX_MIGS + 1];
static call_slot_t *calls; /* mmap of state.calls_file, or NULL */
static char calls_path[PATH_MAX];

static void config_path(char *out, size_t size)
{
    const char *env = getenv("NVML_STANDIN_CONFIG");
    Dl_info info;
    char dir[PATH_MAX];

    if (env && *env) {
        snprintf(out, size, "%s", env);
        return;
    }
    out[0] = '\0';
    if (dladdr((void *)config_path, &info) && info.dli_fname) {
        snprintf(dir, sizeof(dir), "%s", info.dli_fname);
        snprintf(out, size, "%s/nvml-standin.conf", dirname(dir));
    }
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static void set_gpu_key(gpu_t *g, const char *key, const char *val)
{
    if (!strcmp(key, "uuid")) copy_str(g->uuid, sizeof(g->uuid), val);
    else if (!strcmp(key, "name")) copy_str(g->name, sizeof(g->name), val);
    else if (!strcmp(key, "pci_bus_id")) copy_str(g->pci_bus_id, sizeof(g->pci_bus_id), val);
    else if (!strcmp(key, "minor")) g->minor = (unsigned int)strtoul(val, NULL, 10);
    else if (!strcmp(key, "power_mw")) g->power_mw = strtoull(val, NULL, 10);
    else if (!strcmp(key, "energy_offset_mj")) g->energy_offset_mj = strtoull(val, NULL, 10);
    else if (!strcmp(key, "energy_ret")) g->energy_ret = atoi(val);
    else if (!strcmp(key, "power_ret")) g->power_ret = atoi(val);
    else if (!strcmp(key, "max_mig")) g->max_mig = (unsigned int)strtoul(val, NULL, 10);
    else if (!strcmp(key, "util_pct")) g->util_pct = (unsigned int)strtoul(val, NULL, 10);
    else if (!strcmp(key, "util_ret")) g->util_ret = atoi(val);
    else if (!strcmp(key, "mem_used_mib")) g->mem_used_mib = (unsigned int)strtoul(val, NULL, 10);
    else if (!strcmp(key, "mem_total_mib")) g->mem_total_mib = (unsigned int)strtoul(val, NULL, 10);
}

static void set_mig_key(mig_t *m, const char *key, const char *val)
{
    if (!strcmp(key, "uuid")) copy_str(m->uuid, sizeof(m->uuid), val);
    else if (!strcmp(key, "name")) copy_str(m->name, sizeof(m->name), val);
    else if (!strcmp(key, "slices")) m->slices = (unsigned int)strtoul(val, NULL, 10);
}

static void set_key(state_t *s, int in_mig, const char *key, const char *val)
{
    gpu_t *g = s->gpu_count ? &s->gpus[s->gpu_count - 1] : NULL;

    if (in_mig && g && g->mig_count) set_mig_key(&g->migs[g->mig_count - 1], key, val);
    else if (g) set_gpu_key(g, key, val);
    else if (!strcmp(key, "epoch_s")) s->epoch_s = strtod(val, NULL);
    else if (!strcmp(key, "driver_version")) copy_str(s->driver_version, STR_LEN, val);
    else if (!strcmp(key, "init_ret")) s->init_ret = atoi(val);
    else if (!strcmp(key, "calls_file")) copy_str(s->calls_file, PATH_MAX, val);
    else if (!strcmp(key, "load_dir")) copy_str(s->load_dir, PATH_MAX, val);
    else if (!strncmp(key, "cost_us.", 8) && strlen(key + 8) < CALL_NAME && s->cost_count < MAX_COSTS) {
        memcpy(s->costs[s->cost_count].function, key + 8, strlen(key + 8) + 1);
        s->costs[s->cost_count++].cost_us = atol(val);
    }
}

/* One line: "[gpu]" opens a device, "[mig]" a slice of the last device, else key=value. */
static void parse_line(state_t *s, char *line, int *in_mig)
{
    char *eq;
    gpu_t *g = s->gpu_count ? &s->gpus[s->gpu_count - 1] : NULL;

    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0') return;
    if (!strcmp(line, "[gpu]")) {
        if (s->gpu_count < MAX_GPUS) memset(&s->gpus[s->gpu_count++], 0, sizeof(gpu_t));
        *in_mig = 0;
    } else if (!strcmp(line, "[mig]")) {
        if (g && g->mig_count < MAX_MIGS) memset(&g->migs[g->mig_count++], 0, sizeof(mig_t));
        *in_mig = 1;
    } else if ((eq = strchr(line, '=')) != NULL) {
        *eq = '\0';
        set_key(s, *in_mig, line, eq + 1);
    }
}

static int parse_file(const char *path, state_t *s)
{
    char line[512];
    int in_mig = 0;
    FILE *f = fopen(path, "r");

    if (!f) return -1;
    memset(s, 0, sizeof(*s));
    while (fgets(line, sizeof(line), f)) parse_line(s, line, &in_mig);
    fclose(f);
    return 0;
}

/* (Re)map the call-count file named by the config; called with the lock held. */
static void map_calls(void)
{
    int fd;
    void *mapped;
    size_t size = CALL_SLOTS * sizeof(call_slot_t);

    if (!strcmp(state.calls_file, calls_path)) return;
    if (calls) munmap(calls, size);
    calls = NULL;
    copy_str(calls_path, sizeof(calls_path), state.calls_file);
    if (!calls_path[0]) return;
    fd = open(calls_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, (off_t)size) == 0) {
        mapped = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapped != MAP_FAILED) calls = mapped;
    }
    close(fd);
}

static void count_call(const char *function)
{
    for (int i = 0; calls && i < CALL_SLOTS; i++) {
        if (!calls[i].name[0]) copy_str(calls[i].name, CALL_NAME, function);
        if (!strcmp(calls[i].name, function)) {
            __atomic_add_fetch(&calls[i].count, 1, __ATOMIC_RELAXED);
            return;
        }
    }
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Burn the configured CPU time of `function`, as a real driver call does, then count the call. */
static void charge(const char *function)
{
    double end;

    if (!loaded) return;
    for (int i = 0; i < state.cost_count; i++) {
        if (strcmp(state.costs[i].function, function)) continue;
        end = cpu_s() + (double)state.costs[i].cost_us / 1e6;
        while (cpu_s() < end) {
        }
        break;
    }
    count_call(function); /* once done: a call still burning its cost has not answered yet */
}

/* Re-read the file if it changed; called with the lock held. */
static void refresh(void)
{
    char path[PATH_MAX];
    struct stat st;
    static state_t fresh;

    config_path(path, sizeof(path));
    if (!path[0] || stat(path, &st) != 0) {
        loaded = 0;
        return;
    }
    if (loaded && !strcmp(path, loaded_path) && st.st_ino == loaded_stat.st_ino &&
        st.st_dev == loaded_stat.st_dev && st.st_size == loaded_stat.st_size &&
        st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
        return;
    if (parse_file(path, &fresh) != 0) {
        loaded = 0;
        return;
    }
    state = fresh;
    map_calls();
    loaded = 1;
    loaded_stat = st;
    copy_str(loaded_path, sizeof(loaded_path), path);
}

/* Lock, refresh and check that the library is initialised and the handle names a device. */
#define enter(h, gpu, mig) enter_as(__func__, h, gpu, mig)
static int enter_as(const char *function, const handle_t *h, gpu_t **gpu, mig_t **mig)
{
    pthread_mutex_lock(&lock);
    refresh();
    charge(function);
    if (!init_refcount) return NVML_ERROR_UNINITIALIZED;
    if (!loaded) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (!h) return NVML_SUCCESS;
    if (h->gpu < 0 || h->gpu >= state.gpu_count) return NVML_ERROR_GPU_IS_LOST;
    *gpu = &state.gpus[h->gpu];
    *mig = NULL;
    if (h->mig >= 0) {
        if (h->mig >= (*gpu)->mig_count) return NVML_ERROR_GPU_IS_LOST;
        *mig = &(*gpu)->migs[h->mig];
    }
    return NVML_SUCCESS;
}

static int leave(int ret)
{
    pthread_mutex_unlock(&lock);
    return ret;
}

static handle_t *handle_for(int gpu, int mig)
{
    handle_t *h = &handles[gpu][mig + 1];
    h->gpu = gpu;
    h->mig = mig;
    return h;
}

static int put_str(char *buf, unsigned int len, const char *value)
{
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

EXPORT int nvmlInitWithFlags(unsigned int flags)
{
    int ret;
    (void)flags;
    pthread_mutex_lock(&lock);
    refresh();
    ret = !loaded ? NVML_ERROR_DRIVER_NOT_LOADED : state.init_ret;
    if (ret == NVML_SUCCESS) init_refcount++;
    return leave(ret);
}

EXPORT int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

EXPORT int nvmlShutdown(void)
{
    int ret = NVML_SUCCESS;
    pthread_mutex_lock(&lock);
    if (init_refcount) init_refcount--;
    else ret = NVML_ERROR_UNINITIALIZED;
    return leave(ret);
}

EXPORT const char *nvmlErrorString(int result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

EXPORT int nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    int ret = enter(NULL, NULL, NULL);
    if (ret == NVML_SUCCESS) ret = put_str(version, length, state.driver_version);
    return leave(ret);
}

EXPORT int nvmlDeviceGetCount_v2(unsigned int *count)
{
    int ret = enter(NULL, NULL, NULL);
    if (ret == NVML_SUCCESS && !count) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) *count = (unsigned int)state.gpu_count;
    return leave(ret);
}

EXPORT int nvmlDeviceGetHandleByIndex_v2(unsigned int index, handle_t **device)
{
    int ret = enter(NULL, NULL, NULL);
    if (ret == NVML_SUCCESS && (!device || index >= (unsigned int)state.gpu_count))
        ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) *device = handle_for((int)index, -1);
    return leave(ret);
}

EXPORT int nvmlDeviceGetHandleByUUID(const char *uuid, handle_t **device)
{
    int ret = enter(NULL, NULL, NULL);
    if (ret == NVML_SUCCESS && (!uuid || !device)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret != NVML_SUCCESS) return leave(ret);
    for (int i = 0; i < state.gpu_count; i++) {
        if (!strcmp(state.gpus[i].uuid, uuid)) {
            *device = handle_for(i, -1);
            return leave(NVML_SUCCESS);
        }
        for (int j = 0; j < state.gpus[i].mig_count; j++) {
            if (!strcmp(state.gpus[i].migs[j].uuid, uuid)) {
                *device = handle_for(i, j);
                return leave(NVML_SUCCESS);
            }
        }
    }
    return leave(NVML_ERROR_NOT_FOUND);
}

EXPORT int nvmlDeviceGetUUID(handle_t *device, char *uuid, unsigned int length)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS) ret = put_str(uuid, length, m ? m->uuid : g->uuid);
    return leave(ret);
}

EXPORT int nvmlDeviceGetName(handle_t *device, char *name, unsigned int length)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS) ret = put_str(name, length, m && m->name[0] ? m->name : g->name);
    return leave(ret);
}

EXPORT int nvmlDeviceGetMinorNumber(handle_t *device, unsigned int *minor)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !minor) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && m) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS) *minor = g->minor;
    return leave(ret);
}

EXPORT int nvmlDeviceGetPciInfo_v3(handle_t *device, nvmlPciInfo_t *pci)
{
    gpu_t *g;
    mig_t *m;
    unsigned int domain = 0, bus = 0, dev = 0, fn = 0;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !pci) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret != NVML_SUCCESS) return leave(ret);
    memset(pci, 0, sizeof(*pci));
    sscanf(g->pci_bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = 0x233010de;
    copy_str(pci->busId, sizeof(pci->busId), g->pci_bus_id);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0", domain & 0xffff,
             bus & 0xff, dev & 0xff);
    return leave(NVML_SUCCESS);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

EXPORT int nvmlDeviceGetTotalEnergyConsumption(handle_t *device, unsigned long long *energy)
{
    gpu_t *g;
    mig_t *m;
    double elapsed;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !energy) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && m) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS) ret = g->energy_ret;
    if (ret != NVML_SUCCESS) return leave(ret);
    elapsed = now_s() - state.epoch_s;
    if (elapsed < 0) elapsed = 0;
    *energy = g->energy_offset_mj + (unsigned long long)((double)g->power_mw * elapsed);
    return leave(NVML_SUCCESS);
}

EXPORT int nvmlDeviceGetPowerUsage(handle_t *device, unsigned int *power)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !power) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && m) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS) ret = g->power_ret;
    if (ret == NVML_SUCCESS) *power = (unsigned int)g->power_mw;
    return leave(ret);
}

EXPORT int nvmlDeviceIsMigDeviceHandle(handle_t *device, unsigned int *is_mig)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !is_mig) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) *is_mig = m != NULL;
    return leave(ret);
}

EXPORT int nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle_t *mig_device, handle_t **device)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(mig_device, &g, &m);
    if (ret == NVML_SUCCESS && (!device || !m)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) *device = handle_for(mig_device->gpu, -1);
    return leave(ret);
}

EXPORT int nvmlDeviceGetMigMode(handle_t *device, unsigned int *current, unsigned int *pending)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && (!current || !pending || m)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && !g->max_mig) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS) *current = *pending = g->mig_count > 0;
    return leave(ret);
}

EXPORT int nvmlDeviceGetMaxMigDeviceCount(handle_t *device, unsigned int *count)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && (!count || m)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && !g->max_mig) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS) *count = g->max_mig;
    return leave(ret);
}

EXPORT int nvmlDeviceGetMigDeviceHandleByIndex(handle_t *device, unsigned int index,
                                               handle_t **mig_device)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && (!mig_device || m)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && !g->max_mig) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret == NVML_SUCCESS && index >= g->max_mig) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && index >= (unsigned int)g->mig_count) ret = NVML_ERROR_NOT_FOUND;
    if (ret == NVML_SUCCESS) *mig_device = handle_for(device->gpu, (int)index);
    return leave(ret);
}

/* Real NVML answers this for MIG device handles only. */
EXPORT int nvmlDeviceGetAttributes_v2(handle_t *device, nvmlDeviceAttributes_t *attrs)
{
    gpu_t *g;
    mig_t *m;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !attrs) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && !m) ret = NVML_ERROR_NOT_SUPPORTED;
    if (ret != NVML_SUCCESS) return leave(ret);
    memset(attrs, 0, sizeof(*attrs));
    attrs->gpuInstanceSliceCount = m->slices;
    attrs->computeInstanceSliceCount = m->slices;
    attrs->multiprocessorCount = 16 * m->slices;
    attrs->memorySizeMB = 10240ULL * m->slices;
    return leave(NVML_SUCCESS);
}

/* The GPU's load: its load file while the pid in it lives (see the header comment), else the
 * programmed `util_pct` and `mem_used_mib`. A file that cannot be parsed reads as idle. */
static void load_of(const gpu_t *g, unsigned int *util, unsigned int *mem_mib)
{
    char path[PATH_MAX + 16];
    unsigned int pct = 0, mib = 0;
    int pid = 0, fields;
    FILE *f;

    *util = g->util_pct;
    *mem_mib = g->mem_used_mib;
    if (!state.load_dir[0]) return;
    *util = 0;
    snprintf(path, sizeof(path), "%s/%u", state.load_dir, g->minor);
    if (!(f = fopen(path, "r"))) return;
    fields = fscanf(f, "%u %d %u", &pct, &pid, &mib);
    fclose(f);
    if (fields < 2 || pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)) return;
    *util = pct > 100 ? 100 : pct;
    if (fields == 3) *mem_mib = mib;
}

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

EXPORT int nvmlDeviceGetUtilizationRates(handle_t *device, nvmlUtilization_t *utilization)
{
    gpu_t *g;
    mig_t *m;
    unsigned int util, mem_mib;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !utilization) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS && m) ret = NVML_ERROR_NOT_SUPPORTED; /* as on MIG-enabled GPUs */
    if (ret == NVML_SUCCESS) ret = g->util_ret;
    if (ret != NVML_SUCCESS) return leave(ret);
    load_of(g, &util, &mem_mib);
    utilization->gpu = util;
    utilization->memory = util / 2;
    return leave(NVML_SUCCESS);
}

EXPORT int nvmlDeviceGetMemoryInfo(handle_t *device, nvmlMemory_t *memory)
{
    gpu_t *g;
    mig_t *m;
    unsigned int util, mem_mib;
    unsigned long long total;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && !memory) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) ret = g->util_ret;
    if (ret != NVML_SUCCESS) return leave(ret);
    load_of(g, &util, &mem_mib);
    total = (unsigned long long)(g->mem_total_mib ? g->mem_total_mib : 81559) << 20;
    memory->total = total;
    memory->used = (unsigned long long)mem_mib << 20;
    if (memory->used > total) memory->used = total;
    memory->free = total - memory->used;
    return leave(NVML_SUCCESS);
}

/* nvmlFieldValue_t as nvml.h lays it out; only the energy counter and instant power are served. */
typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType, nvmlReturn;
    unsigned long long value;
} nvmlFieldValue_t;

#define NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION 83
#define NVML_FI_DEV_POWER_INSTANT 186
#define NVML_VALUE_TYPE_UNSIGNED_INT 1
#define NVML_VALUE_TYPE_UNSIGNED_LONG_LONG 3

EXPORT int nvmlDeviceGetFieldValues(handle_t *device, int count, nvmlFieldValue_t *values)
{
    gpu_t *g;
    mig_t *m;
    double elapsed;
    int ret = enter(device, &g, &m);
    if (ret == NVML_SUCCESS && (!values || count < 0)) ret = NVML_ERROR_INVALID_ARGUMENT;
    if (ret != NVML_SUCCESS) return leave(ret);
    elapsed = now_s() - state.epoch_s;
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = (long long)(now_s() * 1e6);
        v->latencyUsec = 0;
        if (v->fieldId == NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION) {
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            v->nvmlReturn = m ? NVML_ERROR_NOT_SUPPORTED : g->energy_ret;
            v->value = g->energy_offset_mj + (unsigned long long)((double)g->power_mw * (elapsed > 0 ? elapsed : 0));
        } else if (v->fieldId == NVML_FI_DEV_POWER_INSTANT) {
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->nvmlReturn = m ? NVML_ERROR_NOT_SUPPORTED : g->power_ret;
            v->value = g->power_mw;
        } else {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return leave(NVML_SUCCESS);
}

/* cudasim: the CUDA runtime subset this project calls, on the CPU
 * (tests/cudasim/README.md; the device-side half is cudasim.h).
 *
 * Memory: cudaMalloc is host memory (256-byte aligned, filled with 0xff so
 * that a read of memory nobody wrote is NaN, as uninitialised device memory
 * often is), tracked so that copies, kernel arguments, cuBLAS and CUB can
 * check that their device pointers lie in an allocation. Under ASan the
 * allocations are poisoned while no device work runs, so that host code
 * touching device memory is reported, as it would fault on a GPU. Streams:
 * every operation runs when it is issued, except on a stream being captured,
 * where it is recorded into the graph and runs at each cudaGraphLaunch; what
 * a GPU might overlap is found by checking each operation's order against
 * the last ones that touched its allocations ("stream order" below).
 * Kernels: the blocks of a grid run one after another, not in index order;
 * the threads of a block are fibers (ucontext) that run in a shuffled order
 * (CUDASIM_SCHEDULE) until each waits at a barrier; warps waiting at a
 * collective go on one at a time (pick_warp).
 *
 * One host thread at a time: this is a test harness, not a runtime. */
#include "cudasim.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#ifdef CUDASIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ---- context switch -------------------------------------------------------------
 * glibc's swapcontext makes two system calls (the signal mask) per switch,
 * most of the emulator's time; on x86-64 a switch of the callee-saved
 * registers does (the System V ABI: rbx, rbp, r12-r15; the fiber never
 * changes the FP control words). Elsewhere, ucontext. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CUDASIM_FAST_SWITCH 1
extern "C" void cudasim_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".globl cudasim_switch\n"
    ".type cudasim_switch,@function\n"
    "cudasim_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size cudasim_switch, .-cudasim_switch\n");
#endif

/* Vector clock of the stream-order check: entry i counts the operations of
 * stream i known to have completed (or, for a stream's own entry, issued). */
typedef std::vector<unsigned long long> vclock;

struct CUstream_st {
  unsigned flags;
  bool capturing, invalidated;
  cudaStreamCaptureMode mode;
  struct CUgraph_st *graph;
  int id; /* 1, 2, ... in creation order; 0 is the legacy stream */
  vclock clock;
};
struct graph_node {
  std::function<void()> work;
  cudasim::access_list accesses;
};
struct CUgraph_st {
  std::vector<graph_node> nodes;
};
struct CUgraphExec_st {
  std::vector<graph_node> nodes;
};
struct CUevent_st {
  double ms; /* host clock when the record ran */
  bool recorded;
  vclock clock; /* what a wait on the event learns */
};

namespace cudasim {

uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;

namespace {

/* ---- errors ---------------------------------------------------------------- */
cudaError_t last_error = cudaSuccess;

cudaError_t ret(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

[[noreturn]] void fatal(const char *what, const char *kernel) {
  fprintf(stderr, "cudasim: %s%s%s\n", what, kernel ? " in kernel " : "", kernel ? kernel : "");
  fflush(stderr);
  abort();
}

/* ---- allocations ------------------------------------------------------------ */
/* The last operations that touched an allocation, for the stream-order check:
 * the last write and, per stream, the last read since that write. */
struct stream_op {
  int stream;
  unsigned long long tick; /* the stream's clock entry for that operation */
  const char *who;
};
struct allocation {
  uintptr_t base;
  size_t bytes;
  stream_op write;
  std::vector<stream_op> reads;
};
std::map<uintptr_t, allocation> allocations; /* by base address */

/* The allocation that [p, p + n) lies in, or null. (n = 0: p may be the
 * allocation's end, as a pointer past the last element may.) */
allocation *find_allocation(const void *p, size_t n) {
  const uintptr_t a = (uintptr_t)p;
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return nullptr;
  --it;
  return a >= it->first && a + n <= it->first + it->second.bytes ? &it->second : nullptr;
}

bool in_device(const void *p, size_t n) { return find_allocation(p, n) != nullptr; }

/* ---- device residency -----------------------------------------------------------
 * On a GPU, host code that reads or writes through a cudaMalloc pointer
 * faults; here all memory is host memory and it would silently work. So under
 * ASan every allocation is poisoned while no device work runs, and device
 * work (a kernel, a copy, a memset, cuBLAS, CUB: everything goes through
 * device_scope) unpoisons them for its duration. A host access is then an
 * ASan use-after-poison report with the host's stack, and report_hint says
 * what it means.
 *
 * Only the first POISON_BYTES of each allocation are poisoned (all of a
 * smaller one): the toggle runs twice per launch, and poisoning a model's
 * hundreds of MB at every launch made the SmolLM2 test several times slower.
 * The bugs this is for read a small result (a counter, a flag, a scalar) or
 * walk a buffer from its start, and those land in the poisoned part. */
int device_depth = 0;
const size_t POISON_BYTES = 4096;

void set_poison(uintptr_t base, size_t bytes, bool poison) {
#ifdef CUDASIM_ASAN
  const size_t n = bytes < POISON_BYTES ? bytes : POISON_BYTES;
  if (poison)
    __asan_poison_memory_region((const void *)base, n);
  else
    __asan_unpoison_memory_region((const void *)base, n);
#else
  (void)base, (void)bytes, (void)poison;
#endif
}

void poison_allocations(bool poison) {
  for (const auto &a : allocations) set_poison(a.first, a.second.bytes, poison);
}

struct device_scope {
  device_scope() {
    if (device_depth++ == 0) poison_allocations(false);
  }
  ~device_scope() {
    if (--device_depth == 0) poison_allocations(true);
  }
  device_scope(const device_scope &) = delete;
  device_scope &operator=(const device_scope &) = delete;
};

#ifdef CUDASIM_ASAN
void report_hint(const char *report) {
  if (strstr(report, "use-after-poison") && !allocations.empty())
    fprintf(stderr, "cudasim: a use-after-poison here most likely means that host code read or wrote device memory "
            "(a cudaMalloc pointer) outside any kernel or copy: on a GPU that faults; copy it with cudaMemcpy\n");
}
struct install_report_hint {
  install_report_hint() { __asan_set_error_report_callback(report_hint); }
} install_report_hint_now;
#endif

/* ---- stream order ----------------------------------------------------------------
 * On a GPU, operations on different streams run concurrently unless something
 * orders them; here everything runs when issued, so a missing
 * synchronisation between streams would never show. So every operation is
 * checked against the last ones that touched the same allocations: a write
 * and an earlier read or write on another stream, or a read and an earlier
 * write on another stream, must be ordered by a happens-before chain, else
 * the run aborts naming both operations and streams. Happens-before is
 * tracked with vector clocks (one entry per stream):
 *  - an operation follows everything the host knew to be complete when it
 *    was issued, and everything issued earlier on its stream;
 *  - the legacy stream (0) waits for the earlier work of every blocking
 *    stream, and a blocking stream's work waits for earlier legacy work;
 *  - the host learns a stream's clock at cudaStreamSynchronize, an event's
 *    at cudaEventSynchronize, every stream's at cudaDeviceSynchronize and
 *    cudaFree (which synchronises the device), the legacy stream's at the
 *    end of a synchronous cudaMemcpy, and the copy stream's at the end of a
 *    cudaMemcpyAsync to host memory (pageable, as all host memory here is:
 *    that copy returns when it is done).
 * An allocation is the unit: two streams writing disjoint halves of one
 * buffer would be reported. Work recorded in a graph is checked when the
 * graph is launched, as work of the stream it is launched on. */
vclock host_clock;    /* what the host knows to be complete */
vclock legacy_clock;  /* the legacy stream's own clock */
vclock retired_clock; /* destroyed streams' clocks: a device sync waits for them too */
int next_stream_id = 1;

void join(vclock &into, const vclock &from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); i++)
    if (from[i] > into[i]) into[i] = from[i];
}

unsigned long long entry(const vclock &c, int i) { return (size_t)i < c.size() ? c[i] : 0; }

std::set<cudaStream_t> streams;

bool is_legacy(cudaStream_t s) { return s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread; }

vclock &clock_of(cudaStream_t s) { return is_legacy(s) ? legacy_clock : s->clock; }

void host_waits_for(cudaStream_t s) { join(host_clock, clock_of(s)); }

void host_waits_for_device() {
  join(host_clock, legacy_clock);
  join(host_clock, retired_clock);
  for (cudaStream_t s : streams) join(host_clock, s->clock);
}

std::string stream_name(int id) {
  if (id == 0) return "the legacy default stream";
  for (cudaStream_t s : streams)
    if (s->id == id) return "stream #" + std::to_string(id) + ((s->flags & cudaStreamNonBlocking) ? " (non-blocking)" : " (blocking)");
  return "stream #" + std::to_string(id) + " (destroyed)";
}

[[noreturn]] void report_race(const access &a, const allocation &al, int stream, const stream_op &earlier,
                              bool earlier_wrote) {
  fprintf(stderr,
          "cudasim: stream-order race: %s on %s %s the allocation at %p (%zu bytes), which %s on %s %s earlier, "
          "and nothing orders the two (no cudaStreamSynchronize, cudaDeviceSynchronize, event wait or "
          "legacy-stream dependency between them): on a GPU they may run at the same time\n",
          a.who, stream_name(stream).c_str(), a.write ? "writes" : "reads", (void *)al.base, al.bytes,
          earlier.who, stream_name(earlier.stream).c_str(), earlier_wrote ? "wrote" : "read");
  fflush(stderr);
  abort();
}

/* Stamps one operation of stream `s` that touches `accesses`: orders it after
 * what it waits for, checks it against the allocations' last operations,
 * and records it in them. */
void order_operation(cudaStream_t s, const access_list &accesses) {
  vclock &c = clock_of(s);
  const int id = is_legacy(s) ? 0 : s->id;
  join(c, host_clock);
  if (is_legacy(s)) {
    for (cudaStream_t b : streams)
      if (!(b->flags & cudaStreamNonBlocking)) join(c, b->clock);
  } else if (!(s->flags & cudaStreamNonBlocking)) {
    join(c, legacy_clock);
  }
  if (c.size() <= (size_t)id) c.resize(id + 1, 0);
  const unsigned long long tick = ++c[id];
  /* null, or the end of an allocation: nothing touched */
  std::vector<allocation *> touched(accesses.size());
  for (size_t i = 0; i < accesses.size(); i++) touched[i] = find_allocation(accesses[i].p, 1);
  for (size_t i = 0; i < accesses.size(); i++) {
    const access &a = accesses[i];
    const allocation *al = touched[i];
    if (!al) continue;
    const stream_op &w = al->write;
    if (w.who && w.stream != id && entry(c, w.stream) < w.tick) report_race(a, *al, id, w, true);
    if (a.write)
      for (const stream_op &r : al->reads)
        if (r.stream != id && entry(c, r.stream) < r.tick) report_race(a, *al, id, r, false);
  }
  /* Writes first: any later operation ordered after this write is ordered
   * after the reads it was checked against, so they need not be kept; then
   * this operation's own reads. */
  for (size_t i = 0; i < accesses.size(); i++)
    if (touched[i] && accesses[i].write) {
      touched[i]->write = stream_op{id, tick, accesses[i].who};
      touched[i]->reads.clear();
    }
  for (size_t i = 0; i < accesses.size(); i++) {
    allocation *al = touched[i];
    if (!al || accesses[i].write) continue;
    const stream_op op{id, tick, accesses[i].who};
    bool found = false;
    for (stream_op &r : al->reads)
      if (r.stream == id) r = op, found = true;
    if (!found) al->reads.push_back(op);
  }
}

/* ---- stream capture ------------------------------------------------------------ */

/* Captures in a mode that forbids "potentially unsafe" calls on this thread. */
bool strict_capture_active() {
  for (cudaStream_t s : streams)
    if (s->capturing && s->mode != cudaStreamCaptureModeRelaxed) return true;
  return false;
}

void invalidate_captures() {
  for (cudaStream_t s : streams)
    if (s->capturing) s->invalidated = true;
}

/* cudaMalloc, cudaFree, synchronous copies and device-wide synchronisation
 * are refused while a strict capture is open, and they break that capture. */
cudaError_t unsafe_call() {
  if (!strict_capture_active()) return cudaSuccess;
  invalidate_captures();
  return cudaErrorStreamCaptureUnsupported;
}

/* ---- fibers ------------------------------------------------------------------- */
enum fiber_state { READY, AT_BLOCK, AT_WARP, DONE };

struct fiber {
#ifdef CUDASIM_FAST_SWITCH
  void *sp;
#else
  ucontext_t ctx;
#endif
  fiber_state st;
  uint3 tid;
  int linear;
  char *stack;
  void *fake_stack;
};

struct warp_slots {
  unsigned gen;                  /* warp barriers released so far */
  unsigned char slot[2][32][16]; /* shuffle values, double-buffered by gen parity */
  unsigned stamp[2][32];         /* gen at which each slot was written */
  unsigned memo_gen;             /* gen of the collective whose result memo holds */
  std::vector<unsigned char> memo;
};

const size_t STACK_BYTES = (size_t)512 << 10;

struct block_run {
  std::vector<fiber> f;
  std::vector<warp_slots> w;
  std::vector<int> order;
  unsigned long long rng = 0; /* SCHED_RANDOM: which waiting warp goes on next */
#ifdef CUDASIM_FAST_SWITCH
  void *sched_sp = nullptr;
#else
  ucontext_t sched;
#endif
  void *sched_fake = nullptr;
  const void *sched_bottom = nullptr;
  size_t sched_size = 0;
  fiber *cur = nullptr;
  const std::function<void()> *body = nullptr;
  unsigned char *smem = nullptr;
  const char *name = nullptr;
  bool active = false;
} B;

std::vector<char *> stacks;
unsigned long long launches = 0;

char *stack_for(size_t i) {
  while (stacks.size() <= i) {
    void *p = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("cannot map a fiber stack", B.name);
    stacks.push_back((char *)p);
  }
  return stacks[i];
}

/* Fiber -> scheduler. */
void yield_to_scheduler(bool dying) {
  fiber *f = B.cur;
#ifdef CUDASIM_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, B.sched_bottom, B.sched_size);
#endif
#ifdef CUDASIM_FAST_SWITCH
  cudasim_switch(&f->sp, B.sched_sp);
  if (dying) fatal("a finished thread was resumed", B.name);
#else
  if (dying) {
    setcontext(&B.sched);
    fatal("setcontext returned", B.name);
  }
  swapcontext(&f->ctx, &B.sched);
#endif
#ifdef CUDASIM_ASAN
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

void fiber_main() {
#ifdef CUDASIM_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &B.sched_bottom, &B.sched_size);
#endif
  (*B.body)();
  B.cur->st = DONE;
  yield_to_scheduler(true);
}

/* Scheduler -> fiber f, until f waits or ends. */
void resume(fiber &f) {
  B.cur = &f;
  thread_idx = f.tid;
#ifdef CUDASIM_ASAN
  __sanitizer_start_switch_fiber(&B.sched_fake, f.stack, STACK_BYTES);
#endif
#ifdef CUDASIM_FAST_SWITCH
  cudasim_switch(&B.sched_sp, f.sp);
#else
  swapcontext(&B.sched, &f.ctx);
#endif
#ifdef CUDASIM_ASAN
  __sanitizer_finish_switch_fiber(B.sched_fake, nullptr, nullptr);
#endif
}

/* CUDASIM_SCHEDULE: "forward", "reverse", or "random" (default) with
 * CUDASIM_SEED (default 1) mixed with the launch number. */
enum { SCHED_RANDOM, SCHED_FORWARD, SCHED_REVERSE };
int schedule_mode() {
  static int mode = -1;
  if (mode < 0) {
    const char *s = getenv("CUDASIM_SCHEDULE");
    mode = !s || !strcmp(s, "random") ? SCHED_RANDOM : !strcmp(s, "forward") ? SCHED_FORWARD
           : !strcmp(s, "reverse")                    ? SCHED_REVERSE
                                                      : (fatal("CUDASIM_SCHEDULE must be forward, reverse or random", nullptr), 0);
  }
  return mode;
}

unsigned long long seed_base() {
  static unsigned long long seed = 0;
  if (!seed) {
    const char *s = getenv("CUDASIM_SEED");
    seed = s ? strtoull(s, nullptr, 10) + 1 : 2;
  }
  return seed;
}

void make_order(int n) {
  B.order.resize(n);
  for (int i = 0; i < n; i++) B.order[i] = i;
  const int mode = schedule_mode();
  if (mode == SCHED_REVERSE) {
    for (int i = 0; i < n; i++) B.order[i] = n - 1 - i;
  } else if (mode == SCHED_RANDOM) {
    unsigned long long x = seed_base() * 0x9E3779B97F4A7C15ull + launches * 0xBF58476D1CE4E5B9ull +
                           (((unsigned long long)block_idx.z * 65536u + block_idx.y) * 2147483648ull + block_idx.x);
    for (int i = n - 1; i > 0; i--) {
      x ^= x >> 31;
      x *= 0x94D049BB133111EBull;
      x ^= x >> 29;
      const int j = (int)(x % (unsigned long long)(i + 1));
      const int t = B.order[i];
      B.order[i] = B.order[j];
      B.order[j] = t;
    }
    B.rng = x | 1;
  }
}

/* Index of the warp to release among the `n` whose every live lane waits at
 * a warp collective (ready[0..n)): the first (forward), the last (reverse)
 * or a random one. Releasing one warp at a time lets it run ahead of the
 * others up to the next __syncthreads, as real warps may: a missing block
 * barrier between one warp's reads and another warp's writes of the next
 * phase then shows, which it does not when all warps step from collective to
 * collective together. */
int pick_warp(const std::vector<int> &ready) {
  const int mode = schedule_mode(), n = (int)ready.size();
  if (mode == SCHED_FORWARD) return ready[0];
  if (mode == SCHED_REVERSE) return ready[n - 1];
  B.rng ^= B.rng << 13, B.rng ^= B.rng >> 7, B.rng ^= B.rng << 17;
  return ready[(int)(B.rng % (unsigned long long)n)];
}

void run_block(int n) {
  B.f.resize(n);
  B.w.assign((n + 31) / 32, warp_slots{});
  for (warp_slots &w : B.w) {
    memset(w.stamp, 0xff, sizeof w.stamp);
    w.memo_gen = ~0u;
  }
  make_order(n);
  for (int i = 0; i < n; i++) {
    fiber &f = B.f[i];
    f.st = READY;
    f.linear = i;
    f.tid = make_uint3(i % block_dim.x, i / block_dim.x % block_dim.y, i / (block_dim.x * block_dim.y));
    f.stack = stack_for(i);
    f.fake_stack = nullptr;
#ifdef CUDASIM_FAST_SWITCH
    /* A fresh stack as cudasim_switch leaves one: six saved registers, then
     * the address `ret` jumps to, then a null return address for fiber_main
     * (which never returns), so that fiber_main starts with rsp = 8 mod 16
     * as after a call. */
    void **top = (void **)(f.stack + STACK_BYTES);
    *--top = nullptr;
    *--top = (void *)&fiber_main;
    for (int r = 0; r < 6; r++) *--top = nullptr;
    f.sp = top;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
#endif
  }
  bool reverse_pass = false;
  std::vector<int> ready; /* warps whose live lanes all wait at a collective */
  for (;;) {
    /* Alternate the direction of the passes: a thread that reads what another
     * wrote without a barrier between gets the stale value in one of them. */
    for (int k = 0; k < n; k++) {
      fiber &f = B.f[B.order[reverse_pass ? n - 1 - k : k]];
      if (f.st == READY) resume(f);
    }
    reverse_pass = !reverse_pass;
    ready.clear();
    for (size_t wi = 0; wi < B.w.size(); wi++) {
      const int lo = (int)wi * 32, hi = lo + 32 < n ? lo + 32 : n;
      int alive = 0, waiting = 0;
      for (int i = lo; i < hi; i++) {
        alive += B.f[i].st != DONE;
        waiting += B.f[i].st == AT_WARP;
      }
      if (alive > 0 && waiting == alive) ready.push_back((int)wi);
    }
    if (!ready.empty()) {
      const int wi = pick_warp(ready), lo = wi * 32, hi = lo + 32 < n ? lo + 32 : n;
      for (int i = lo; i < hi; i++)
        if (B.f[i].st == AT_WARP) B.f[i].st = READY;
      B.w[wi].gen++;
      continue;
    }
    int alive = 0, at_block = 0, at_warp = 0;
    for (int i = 0; i < n; i++) {
      alive += B.f[i].st != DONE;
      at_block += B.f[i].st == AT_BLOCK;
      at_warp += B.f[i].st == AT_WARP;
    }
    if (alive == 0) break;
    if (at_block == alive) {
      for (int i = 0; i < n; i++)
        if (B.f[i].st == AT_BLOCK) B.f[i].st = READY;
      continue;
    }
    char msg[256];
    snprintf(msg, sizeof msg,
             "deadlock in block (%u, %u, %u): %d of %d threads at __syncthreads, %d at a warp barrier (a barrier "
             "not reached by every thread)",
             block_idx.x, block_idx.y, block_idx.z, at_block, alive, at_warp);
    fatal(msg, B.name);
  }
}

void run_grid(const char *name, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
  if (B.active) fatal("a kernel launched from inside a kernel", name);
  B.active = true;
  B.name = name;
  B.body = &body;
  grid_dim = grid;
  block_dim = block;
  const int n = (int)(block.x * block.y * block.z);
  launches++;
  /* The blocks of a grid run in no set order on a GPU, so here they do not
   * run in index order either (CUDASIM_SCHEDULE as for threads): the i-th to
   * run is block (start + i) mod nb, or (start - i) mod nb, with start not 0
   * and the direction drawn per launch. A kernel whose block reads what
   * another block of the same launch writes (a neighbour, block 0) then
   * computes something else than in index order. A rotation rather than a
   * full shuffle: neighbouring blocks still run one after the other, which
   * keeps the emulator's memory access as local as in index order. */
  const unsigned long long nb = (unsigned long long)grid.x * grid.y * grid.z;
  unsigned long long start = 0;
  bool backward = false;
  const int mode = schedule_mode();
  if (mode == SCHED_REVERSE) {
    start = nb - 1, backward = true;
  } else if (mode == SCHED_RANDOM && nb > 1) {
    unsigned long long x = seed_base() * 0xD1B54A32D192ED03ull + launches * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31, x *= 0x94D049BB133111EBull, x ^= x >> 29;
    start = 1 + x % (nb - 1);
    backward = (x >> 32) & 1;
  }
  for (unsigned long long i = 0; i < nb; i++) {
    const unsigned long long b = backward ? (start + nb - i) % nb : (start + i) % nb;
    block_idx = make_uint3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / grid.x / grid.y));
    /* Fresh, poisoned shared memory per block, exactly as large as asked
     * (ASan then sees any access past it). */
    B.smem = smem ? (unsigned char *)malloc(smem) : nullptr;
    if (smem && !B.smem) fatal("out of host memory for shared memory", name);
    if (B.smem) memset(B.smem, 0xff, smem);
    run_block(n);
    free(B.smem);
    B.smem = nullptr;
  }
  B.active = false;
}

std::map<const void *, int> max_dynamic_smem; /* cudaFuncSetAttribute */

const size_t SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 232448;

}  // namespace

/* ---- device side -------------------------------------------------------------- */

void block_barrier() {
  if (!B.cur) fatal("__syncthreads outside a kernel", nullptr);
  B.cur->st = AT_BLOCK;
  yield_to_scheduler(false);
}

void warp_barrier() {
  if (!B.cur) fatal("a warp collective outside a kernel", nullptr);
  B.cur->st = AT_WARP;
  yield_to_scheduler(false);
}

int lane_id() { return B.cur->linear & 31; }

/* This lane's part of a warp collective: v into its slot, then the warp
 * barrier. Returns the collective's generation (its slots: parity gen & 1). */
static unsigned warp_deposit(warp_slots &w, const void *v, size_t bytes, const char *what) {
  if (bytes > 16) fatal(what, B.name);
  const unsigned gen = w.gen, par = gen & 1u;
  memcpy(w.slot[par][B.cur->linear & 31], v, bytes);
  w.stamp[par][B.cur->linear & 31] = gen;
  warp_barrier();
  return gen;
}

void *warp_exchange(const void *v, size_t bytes, int src_lane) {
  warp_slots &w = B.w[B.cur->linear / 32];
  const unsigned gen = warp_deposit(w, v, bytes, "a warp shuffle of more than 16 bytes"), par = gen & 1u;
  /* The source lane must have taken part in this very shuffle. */
  if (src_lane < 0 || src_lane > 31 || w.stamp[par][src_lane] != gen)
    fatal("a warp shuffle reads a lane that did not take part (exited, or at another shuffle)", B.name);
  return w.slot[par][src_lane];
}

const void *warp_gather(const void *v, size_t bytes) {
  warp_slots &w = B.w[B.cur->linear / 32];
  const unsigned gen = warp_deposit(w, v, bytes, "a warp gather of more than 16 bytes"), par = gen & 1u;
  for (int l = 0; l < 32; l++)
    if (w.stamp[par][l] != gen)
      fatal("a warp-wide PTX operation (ldmatrix, mma) that not every lane of the warp reached", B.name);
  return w.slot[par];
}

std::vector<cp_async_state> &cp_async_threads() {
  static std::vector<cp_async_state> per_thread;
  return per_thread;
}

int thread_linear() { return B.cur->linear; }

void *dynamic_smem() { return B.smem; }

bool warp_memo(size_t bytes, void **buf) {
  warp_slots &w = B.w[B.cur->linear / 32];
  const bool first = w.memo_gen != w.gen;
  if (first) {
    w.memo_gen = w.gen;
    w.memo.resize(bytes);
  }
  *buf = w.memo.data();
  return first;
}

/* ---- launches and host work --------------------------------------------------- */

cudaError_t enqueue(cudaStream_t stream, const char *what, std::function<void()> work, access_list accesses) {
  (void)what;
  if (!is_legacy(stream) && !streams.count(stream)) return ret(cudaErrorInvalidResourceHandle);
  if (!is_legacy(stream) && stream->capturing) {
    if (stream->invalidated) return ret(cudaErrorStreamCaptureInvalidated);
    stream->graph->nodes.push_back(graph_node{std::move(work), std::move(accesses)});
    return cudaSuccess;
  }
  if (is_legacy(stream)) {
    /* The legacy stream waits for every blocking stream: it may not touch a
     * blocking stream that is being captured. */
    for (cudaStream_t s : streams)
      if (s->capturing && !(s->flags & cudaStreamNonBlocking)) {
        invalidate_captures();
        return ret(cudaErrorStreamCaptureImplicit);
      }
  }
  order_operation(stream, accesses);
  device_scope on_device;
  work();
  return cudaSuccess;
}

void check_device_pointer(const char *who, const char *what, int index, const void *p) {
  if (!p || in_device(p, 0)) return;
  char msg[320];
  snprintf(msg, sizeof msg,
           "%s #%d of %s is %p, which is not inside any cudaMalloc allocation: device code given a host pointer "
           "faults on a GPU",
           what, index, who, p);
  fatal(msg, nullptr);
}

void scan_struct_param(const char *kernel, const void *bytes, size_t n, access_list &accesses) {
  for (size_t o = 0; o + sizeof(uintptr_t) <= n; o += alignof(void *)) {
    uintptr_t w;
    memcpy(&w, (const char *)bytes + o, sizeof w);
    if (w && find_allocation((const void *)w, 1)) accesses.push_back({(const void *)w, true, kernel});
  }
}

void submit(const char *name, const void *kernel, const launch_config &c, std::function<void()> body,
            access_list accesses) {
  const unsigned long long threads = (unsigned long long)c.block.x * c.block.y * c.block.z;
  if (!c.grid.x || !c.grid.y || !c.grid.z || !threads || threads > 1024 || c.block.z > 64 || c.grid.y > 65535 ||
      c.grid.z > 65535 || c.grid.x > 2147483647u) {
    fprintf(stderr, "cudasim: %s launched with grid (%u, %u, %u) block (%u, %u, %u): invalid configuration\n", name,
            c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
    ret(cudaErrorInvalidConfiguration);
    return;
  }
  if (c.smem > SMEM_DEFAULT) {
    auto it = max_dynamic_smem.find(kernel);
    const size_t allowed = it == max_dynamic_smem.end() ? SMEM_DEFAULT : (size_t)it->second;
    if (c.smem > allowed || c.smem > SMEM_OPTIN) {
      fprintf(stderr, "cudasim: %s launched with %zu bytes of dynamic shared memory, %zu allowed\n", name, c.smem,
              allowed);
      ret(cudaErrorInvalidValue);
      return;
    }
  }
  const dim3 g = c.grid, b = c.block;
  const size_t smem = c.smem;
  enqueue(c.stream, name, [name, g, b, smem, body]() { run_grid(name, g, b, smem, body); }, std::move(accesses));
}

}  // namespace cudasim

using namespace cudasim;

/* ---- the runtime API ------------------------------------------------------------ */
extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define NAME(x) \
  case x:       \
    return #x;
    NAME(cudaSuccess)
    NAME(cudaErrorInvalidValue)
    NAME(cudaErrorMemoryAllocation)
    NAME(cudaErrorInvalidConfiguration)
    NAME(cudaErrorInvalidDevice)
    NAME(cudaErrorInvalidResourceHandle)
    NAME(cudaErrorNoDevice)
    NAME(cudaErrorMisalignedAddress)
    NAME(cudaErrorLaunchFailure)
    NAME(cudaErrorIllegalAddress)
    NAME(cudaErrorStreamCaptureUnsupported)
    NAME(cudaErrorStreamCaptureInvalidated)
    NAME(cudaErrorStreamCaptureImplicit)
    NAME(cudaErrorStreamCaptureWrongThread)
    NAME(cudaErrorIllegalState)
    NAME(cudaErrorNotSupported)
#undef NAME
    default:
      return "cudaErrorUnknown";
  }
}

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    default: return "unknown error";
  }
}

/* CUDASIM_DEVICES=0 makes the machine look GPU-less (the skip path). */
static int device_count() {
  const char *s = getenv("CUDASIM_DEVICES");
  return s ? atoi(s) : 1;
}

cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return ret(cudaErrorInvalidValue);
  *count = device_count();
  return *count > 0 ? cudaSuccess : ret(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (device_count() < 1) return ret(cudaErrorNoDevice);
  return device == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *device) {
  if (!device) return ret(cudaErrorInvalidValue);
  if (device_count() < 1) return ret(cudaErrorNoDevice);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
  if (!p) return ret(cudaErrorInvalidValue);
  if (device_count() < 1) return ret(cudaErrorNoDevice);
  if (device != 0) return ret(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "cudasim (CPU emulation of an sm_90 device)");
  p->totalGlobalMem = (size_t)80 << 30;
  p->sharedMemPerBlock = SMEM_DEFAULT;
  p->sharedMemPerBlockOptin = SMEM_OPTIN;
  p->sharedMemPerMultiprocessor = 233472;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
  if (!value) return ret(cudaErrorInvalidValue);
  if (device_count() < 1) return ret(cudaErrorNoDevice);
  if (device != 0) return ret(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)SMEM_OPTIN; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)SMEM_DEFAULT; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrL2CacheSize: *value = 50 << 20; break;
    default:
      fprintf(stderr, "cudasim: cudaDeviceGetAttribute(%d) is not emulated\n", (int)attr);
      return ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

/* No register or shared-memory model: the thread limit alone (2048 threads,
 * at most 32 blocks per SM), enough for code that sizes its grid by it. */
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, const void *func, int blockSize,
                                                          size_t dynamicSMemSize) {
  (void)dynamicSMemSize;
  if (!numBlocks || !func || blockSize < 1 || blockSize > 1024) return ret(cudaErrorInvalidValue);
  *numBlocks = 2048 / blockSize < 32 ? 2048 / blockSize : 32;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
  if (!func) return ret(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || (size_t)value > SMEM_OPTIN) return ret(cudaErrorInvalidValue);
    max_dynamic_smem[func] = value;
  }
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
  if (!p) return ret(cudaErrorInvalidValue);
  if (cudaError_t e = unsafe_call()) return ret(e);
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  void *m = nullptr;
  if (posix_memalign(&m, 256, bytes) != 0) return ret(cudaErrorMemoryAllocation);
  memset(m, 0xff, bytes);
  allocations[(uintptr_t)m] = allocation{(uintptr_t)m, bytes, stream_op{0, 0, nullptr}, {}};
  if (device_depth == 0) set_poison((uintptr_t)m, bytes, true);
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = unsafe_call()) return ret(e);
  auto it = allocations.find((uintptr_t)p);
  if (it == allocations.end()) {
    fprintf(stderr, "cudasim: cudaFree(%p): not a pointer cudaMalloc returned\n", p);
    return ret(cudaErrorInvalidValue);
  }
  host_waits_for_device(); /* cudaFree synchronises the device */
  set_poison(it->first, it->second.bytes, false);
  allocations.erase(it);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
  if (!a) return ret(cudaErrorInvalidValue);
  memset(a, 0, sizeof *a);
  if (in_device(p, 1)) {
    a->type = cudaMemoryTypeDevice;
    a->device = 0;
    a->devicePointer = (void *)p;
  } else {
    a->type = cudaMemoryTypeUnregistered;
    a->device = -2;
    a->hostPointer = (void *)p;
  }
  return cudaSuccess;
}

/* The device side(s) of a copy must lie in allocations: a host pointer given
 * as a device pointer faults on a real GPU. */
static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, const char *who) {
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return ret(cudaErrorInvalidValue);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dst_dev && !in_device(dst, n)) || (src_dev && !in_device(src, n))) {
    fprintf(stderr, "cudasim: %s of %zu bytes (kind %d): the device side [%p or %p] is not inside one cudaMalloc "
            "allocation\n", who, n, (int)kind, dst, src);
    return ret(cudaErrorInvalidValue);
  }
  /* The other way round is undefined behaviour too: a kind that calls device
   * memory host memory. */
  if ((!dst_dev && in_device(dst, 1)) || (!src_dev && in_device(src, 1))) {
    fprintf(stderr, "cudasim: %s of %zu bytes (kind %d): the host side [%p or %p] is device memory: the kind does "
            "not match the pointers\n", who, n, (int)kind, dst, src);
    return ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

/* What a copy touches on the device: its source and destination, where they
 * are device memory. */
static access_list copy_accesses(void *dst, const void *src, size_t n, const char *who) {
  access_list a;
  if (n && in_device(src, n)) a.push_back({src, false, who});
  if (n && in_device(dst, n)) a.push_back({dst, true, who});
  return a;
}

/* A synchronous copy is legacy-stream work that the host waits for. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
  if (cudaError_t e = unsafe_call()) return ret(e);
  if (cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpy")) return e;
  if (cudaError_t e = enqueue(0, "cudaMemcpy", [dst, src, n]() {
        if (n) memmove(dst, src, n);
      }, copy_accesses(dst, src, n, "cudaMemcpy")))
    return e;
  host_waits_for(0);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
  if (cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpyAsync")) return e;
  const bool capturing = !is_legacy(s) && streams.count(s) && s->capturing;
  if (cudaError_t e = enqueue(s, "cudaMemcpyAsync", [dst, src, n]() {
        if (n) memmove(dst, src, n);
      }, copy_accesses(dst, src, n, "cudaMemcpyAsync")))
    return e;
  /* To pageable host memory (all host memory here) the copy returns when it
   * is done. */
  if (kind == cudaMemcpyDeviceToHost && !capturing) host_waits_for(s);
  return cudaSuccess;
}

/* Asynchronous with respect to the host, on the legacy stream. */
cudaError_t cudaMemset(void *p, int value, size_t n) {
  if (cudaError_t e = unsafe_call()) return ret(e);
  if (n && !in_device(p, n)) return ret(cudaErrorInvalidValue);
  return enqueue(0, "cudaMemset", [p, value, n]() {
    if (n) memset(p, value, n);
  }, access_list{{p, true, "cudaMemset"}});
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
  if (n && !in_device(p, n)) return ret(cudaErrorInvalidValue);
  return enqueue(s, "cudaMemsetAsync", [p, value, n]() {
    if (n) memset(p, value, n);
  }, access_list{{p, true, "cudaMemsetAsync"}});
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  if (!s) return ret(cudaErrorInvalidValue);
  cudaStream_t st = new CUstream_st();
  st->flags = flags;
  st->id = next_stream_id++;
  streams.insert(st);
  *s = st;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (is_legacy(s) || !streams.count(s)) return ret(cudaErrorInvalidResourceHandle);
  if (s->capturing) return ret(cudaErrorStreamCaptureUnsupported);
  /* Destroying does not wait for the stream's work; a device sync does. */
  join(retired_clock, s->clock);
  streams.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (!is_legacy(s) && !streams.count(s)) return ret(cudaErrorInvalidResourceHandle);
  if (!is_legacy(s) && s->capturing) {
    invalidate_captures();
    return ret(cudaErrorStreamCaptureUnsupported);
  }
  if (is_legacy(s)) {
    if (cudaError_t e = unsafe_call()) return ret(e);
  }
  host_waits_for(s);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = unsafe_call()) return ret(e);
  host_waits_for_device();
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
  if (is_legacy(s)) return ret(cudaErrorStreamCaptureUnsupported);
  if (!streams.count(s)) return ret(cudaErrorInvalidResourceHandle);
  if (s->capturing) return ret(cudaErrorIllegalState);
  s->capturing = true;
  s->invalidated = false;
  s->mode = mode;
  s->graph = new CUgraph_st();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  if (!graph) return ret(cudaErrorInvalidValue);
  if (is_legacy(s) || !streams.count(s)) return ret(cudaErrorInvalidResourceHandle);
  if (!s->capturing) return ret(cudaErrorIllegalState);
  s->capturing = false;
  if (s->invalidated) {
    delete s->graph;
    s->graph = nullptr;
    *graph = nullptr;
    return ret(cudaErrorStreamCaptureInvalidated);
  }
  *graph = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status) {
  if (!status) return ret(cudaErrorInvalidValue);
  if (!is_legacy(s) && !streams.count(s)) return ret(cudaErrorInvalidResourceHandle);
  *status = !is_legacy(s) && s->capturing
                ? (s->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (!exec || !graph) return ret(cudaErrorInvalidValue);
  cudaGraphExec_t x = new CUgraphExec_st();
  x->nodes = graph->nodes;
  *exec = x;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return ret(cudaErrorInvalidValue);
  std::vector<graph_node> *nodes = &exec->nodes;
  access_list accesses;
  for (const graph_node &n : *nodes) accesses.insert(accesses.end(), n.accesses.begin(), n.accesses.end());
  return enqueue(s, "cudaGraphLaunch", [nodes]() {
    for (auto &n : *nodes) n.work();
  }, std::move(accesses));
}

/* Events time the emulator's host clock: only for running code that times
 * itself (the benchmarks, as smoke tests); the figures mean nothing. */
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  if (!e) return ret(cudaErrorInvalidValue);
  *e = new CUevent_st{0.0, false, {}};
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
  (void)flags;
  return cudaEventCreate(e);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return ret(cudaErrorInvalidResourceHandle);
  const cudaError_t r = enqueue(s, "cudaEventRecord", [e]() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->ms = 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
    e->recorded = true;
  }, {});
  /* A record inside a capture orders nothing here: it is not emulated as a
   * graph dependency. */
  if (r == cudaSuccess && (is_legacy(s) || !s->capturing)) e->clock = clock_of(s);
  return r;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e) return ret(cudaErrorInvalidResourceHandle);
  join(host_clock, e->clock);
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  if (!ms || !a || !b) return ret(cudaErrorInvalidValue);
  if (!a->recorded || !b->recorded) return ret(cudaErrorInvalidResourceHandle);
  *ms = (float)(b->ms - a->ms);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
  if (!free_bytes || !total) return ret(cudaErrorInvalidValue);
  size_t used = 0;
  for (const auto &a : allocations) used += a.second.bytes;
  *total = (size_t)80 << 30;
  *free_bytes = used < *total ? *total - used : 0;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

}  // extern "C"

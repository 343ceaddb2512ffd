// Host emulation of the CUDA built-ins the kernels use, for the `cuda-emu` device
// (src/backend/cuda/emulator.rs). Every kernel file of cuda/ and every generated program is
// compiled for the host with this header in front of it, into a shared library whose
// entry points take the same launch description the driver gets (grid, block, shared
// bytes, and one pointer per kernel argument, as cuLaunchKernel's kernelParams).
//
// A launch runs its blocks one after another; a block's threads are fibers (ucontext) on
// the calling OS thread, each with its own stack. A thread runs until it reaches
// __syncthreads or returns, then the next one runs: when every thread of the block has had
// its turn, all of them stand at the same barrier, which is what __syncthreads promises.
// A module whose source never calls __syncthreads runs its threads as plain calls.
// `__shared__` variables are function statics (one per kernel, reused block after block,
// like shared memory). Launches of one device are serialised by the host (they share
// these statics), as kernels on one stream are.
//
// Floating point: NVRTC contracts a * b + c into one FMA by default; the library is built
// with -ffp-contract=fast (and -mfma where the CPU has FMA), so plain expressions contract
// here too. The `__f*_rn` intrinsics never contract, on the GPU or here.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include <setjmp.h>
#include <ucontext.h>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// The built-in variables; set by the scheduler before a thread runs (one module's copy:
// the library is built with hidden visibility).
static dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __grid_constant__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct float4 {
    float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline float __uint_as_float(unsigned i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline unsigned __float_as_uint(float f) {
    unsigned i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }

// An empty asm that claims to change `v`: the compiler cannot fuse the operation that made
// it with the next one (the `_rn` intrinsics are never contracted into an FMA).
#if defined(__x86_64__) || defined(__i386__)
#define EMU_OPAQUE(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#define EMU_OPAQUE(v) __asm__("" : "+w"(v))
#else
#define EMU_OPAQUE(v) __asm__ volatile("" : "+m"(v))
#endif
inline float __fadd_rn(float a, float b) {
    float r = a + b;
    EMU_OPAQUE(r);
    return r;
}
inline float __fsub_rn(float a, float b) {
    float r = a - b;
    EMU_OPAQUE(r);
    return r;
}
inline float __fmul_rn(float a, float b) {
    float r = a * b;
    EMU_OPAQUE(r);
    return r;
}
inline float __fdiv_rn(float a, float b) {
    float r = a / b;
    EMU_OPAQUE(r);
    return r;
}
inline float __fsqrt_rn(float x) {
    float r = std::sqrt(x);
    EMU_OPAQUE(r);
    return r;
}

namespace emu {

// What a launch asks for (the twin of `EmuLaunch` in src/backend/cuda/emulator.rs).
struct Launch {
    unsigned grid[3];
    unsigned block[3];
    unsigned shared_bytes;
};

// Return codes of an entry point.
enum Status : int { OK = 0, BAD_BLOCK = 1, NO_MEMORY = 2, BAD_CONTEXT = 3 };

constexpr std::size_t STACK_BYTES = 64 * 1024;
constexpr unsigned MAX_THREADS = 1024;

// A fiber starts once per launch through ucontext (a system call); after that, switching
// between it and the scheduler is _setjmp/_longjmp, which saves no signal mask.
struct Fiber {
    ucontext_t ctx;
    jmp_buf jb;
    dim3 tid;
    bool started;
    bool done;  // finished the current block
};

static ucontext_t scheduler_ctx;
static jmp_buf scheduler;
static Fiber* current = nullptr;  // null: threads run as plain calls (no barrier)
static void (*body)(void*) = nullptr;
static void* body_arg = nullptr;

// A fiber runs the kernel once per block: after each it reports done and waits to be
// resumed for the next block (the scheduler sets blockIdx and threadIdx first).
inline void yield_to_scheduler() {
    if (_setjmp(current->jb) == 0) _longjmp(scheduler, 1);
}

static void fiber_main() {
    for (;;) {
        body(body_arg);
        current->done = true;
        yield_to_scheduler();
    }
}

inline dim3 thread_of(unsigned t, const Launch& l) {
    return {t % l.block[0], (t / l.block[0]) % l.block[1], t / (l.block[0] * l.block[1])};
}

// Run `f(arg)` once per thread of every block of `l`: as plain calls when the kernel never
// waits at a barrier (`barriers` false), else as fibers. Returns a Status.
inline int run_grid(const Launch& l, void (*f)(void*), void* arg, bool barriers = true) {
    const unsigned nt = l.block[0] * l.block[1] * l.block[2];
    if (nt == 0 || nt > MAX_THREADS || l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0) {
        return BAD_BLOCK;
    }
    blockDim = {l.block[0], l.block[1], l.block[2]};
    gridDim = {l.grid[0], l.grid[1], l.grid[2]};
    if (!barriers) {
        current = nullptr;
        for (unsigned bz = 0; bz < l.grid[2]; ++bz)
            for (unsigned by = 0; by < l.grid[1]; ++by)
                for (unsigned bx = 0; bx < l.grid[0]; ++bx) {
                    blockIdx = {bx, by, bz};
                    for (unsigned t = 0; t < nt; ++t) {
                        threadIdx = thread_of(t, l);
                        f(arg);
                    }
                }
        return OK;
    }
    // The fibers and their stacks are kept from launch to launch (launches of a module
    // never overlap), grown when a block has more threads than before.
    static Fiber* fibers = nullptr;
    static char* stacks = nullptr;
    static unsigned capacity = 0;
    if (nt > capacity) {
        std::free(fibers);
        std::free(stacks);
        fibers = static_cast<Fiber*>(std::calloc(nt, sizeof(Fiber)));
        stacks = static_cast<char*>(std::malloc(nt * STACK_BYTES));
        capacity = nt;
        if (fibers == nullptr || stacks == nullptr) {
            std::free(fibers);
            std::free(stacks);
            fibers = nullptr;
            stacks = nullptr;
            capacity = 0;
            return NO_MEMORY;
        }
    }
    body = f;
    body_arg = arg;
    int status = OK;
    for (unsigned t = 0; t < nt && status == OK; ++t) {
        Fiber& fb = fibers[t];
        fb.tid = thread_of(t, l);
        if (getcontext(&fb.ctx) != 0) {
            status = BAD_CONTEXT;
            break;
        }
        fb.ctx.uc_stack.ss_sp = stacks + (std::size_t)t * STACK_BYTES;
        fb.ctx.uc_stack.ss_size = STACK_BYTES;
        fb.ctx.uc_link = nullptr;
        fb.started = false;
        makecontext(&fb.ctx, fiber_main, 0);
    }
    for (unsigned bz = 0; bz < l.grid[2] && status == OK; ++bz)
        for (unsigned by = 0; by < l.grid[1] && status == OK; ++by)
            for (unsigned bx = 0; bx < l.grid[0] && status == OK; ++bx) {
                blockIdx = {bx, by, bz};
                for (unsigned t = 0; t < nt; ++t) fibers[t].done = false;
                // Round robin: each pass takes every live thread to its next barrier.
                bool live = true;
                while (live) {
                    live = false;
                    for (unsigned t = 0; t < nt; ++t) {
                        Fiber& fb = fibers[t];
                        if (fb.done) continue;
                        current = &fb;
                        threadIdx = fb.tid;
                        if (_setjmp(scheduler) == 0) {
                            if (fb.started) _longjmp(fb.jb, 1);
                            fb.started = true;
                            swapcontext(&scheduler_ctx, &fb.ctx);
                        }
                        live |= !fb.done;
                    }
                }
            }
    // The fibers wait in fiber_main with nothing left on their stacks: the next launch
    // starts them afresh.
    current = nullptr;
    return status;
}

// Call kernel `k` with its arguments read from `params` (one pointer per argument).
template <class... A, std::size_t... I>
inline void call(void (*k)(A...), void** params, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}

template <class... A>
struct Bound {
    void (*k)(A...);
    void** params;
    static void run(void* self) {
        auto* b = static_cast<Bound*>(self);
        call(b->k, b->params, std::index_sequence_for<A...>{});
    }
};

// Launch kernel `k` as `l` describes, its arguments in `params`.
template <class... A>
inline int launch(void (*k)(A...), const Launch* l, void** params, bool barriers) {
    Bound<A...> b{k, params};
    return run_grid(*l, &Bound<A...>::run, &b, barriers);
}

}  // namespace emu

// A thread waits here until every thread of its block has arrived.
inline void __syncthreads() {
    if (emu::current == nullptr) {
        // Only a module built without barriers runs threads as plain calls.
        std::abort();
    }
    emu::yield_to_scheduler();
}

// The entry point the host looks up for kernel `name`.
// EMU_BARRIERS (set by the host): whether the module's source calls __syncthreads.
#ifndef EMU_BARRIERS
#define EMU_BARRIERS 1
#endif
#define EMU_ENTRY(name)                                                                          \
    extern "C" __attribute__((visibility("default"))) int minitorch_emu_##name(                 \
        const emu::Launch* l, void** params) {                                                   \
        return emu::launch(&name, l, params, EMU_BARRIERS);                                      \
    }

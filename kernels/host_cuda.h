// A CUDA emulation for compiling the kernels of this folder with the host C++ compiler (kernels/hostcheck.py).
//
// Only what the .cu files use: the __global__ / __device__ / __forceinline__ qualifiers, blockIdx / blockDim /
// threadIdx / gridDim, __syncthreads, dynamic `extern __shared__` memory, __half with __half2float and
// __float2half_rn (round to nearest even, as CUDA's), and the float math of <cmath> (expf, tanhf, ...: the host
// libm, a few ulp more exact than CUDA's).
//
// Execution model: the blocks of a grid run one after the other on the calling thread; the threads of a block are
// fibers (ucontext), run in order of threadIdx, each until it finishes or reaches __syncthreads, where it waits until
// every unfinished thread of the block has arrived (a finished thread counts as arrived, as exited threads do on
// current GPUs). So a block's threads really do run concurrently up to a barrier: a kernel that reads shared memory
// another thread wrote before the barrier gets the value, and one missing its barrier reads the shared memory's fill.
// Shared memory is a thread_local buffer of the OS thread running the block, filled with 0xFF bytes (a NaN in float
// and in half) before every block, so a read of a sample no thread wrote shows up as a NaN in the output.
//
// Not emulated: warps (no warp-synchronous execution, no shuffles or votes), any interleaving other than "each
// thread runs until the next barrier", timing, caches, device limits other than those hostcheck.py checks.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
// A block's shared variables are per OS thread (the one running the block's fibers); `extern __shared__ T name[];`
// refers to a buffer hostcheck.py defines in the launcher source it generates for each .cu.
#define __shared__ thread_local
// __restrict__ is a g++ keyword already.

using __half = _Float16;  // IEEE binary16, converted by the compiler (round to nearest even)

inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half __float2half_rn(float f) { return static_cast<__half>(f); }
inline __half __float2half(float f) { return static_cast<__half>(f); }

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// Set by the launcher: blockIdx/blockDim/gridDim per block, threadIdx before each fiber resumes.
inline thread_local dim3 blockIdx, blockDim, threadIdx, gridDim;

namespace hostcuda {

constexpr size_t FIBER_STACK_BYTES = 64 * 1024;  // the kernels' frames and libm's need a few KiB
constexpr unsigned MAX_THREADS_PER_BLOCK = 1024;

// Return codes of launch(), read by hostcheck.py (LAUNCH_STATUS).
enum LaunchStatus { OK = 0, BAD_BLOCK = 1, SHARED_TOO_LARGE = 2, NESTED_LAUNCH = 3, BARRIER_OUTSIDE_KERNEL = 4 };

enum FiberState { RUNNING, AT_BARRIER, DONE };

struct Block {
    ucontext_t scheduler;
    std::vector<ucontext_t> contexts;
    std::vector<FiberState> states;
    unsigned current = 0;
    void (*body)(void*) = nullptr;  // the kernel call, with its arguments bound
    void* body_args = nullptr;
};

inline thread_local Block* running_block = nullptr;

// Fiber stacks, kept from one launch to the next (allocating 256 of them per launch costs more than the kernels);
// left uninitialised, so only the few pages a fiber uses are ever touched.
inline thread_local std::vector<std::unique_ptr<char[]>> fiber_stacks;

inline void fiber_entry() {
    Block* block = running_block;
    block->body(block->body_args);
    block->states[block->current] = DONE;  // then uc_link returns to the scheduler
}

inline int barrier() {
    Block* block = running_block;
    if (block == nullptr) return BARRIER_OUTSIDE_KERNEL;
    const unsigned me = block->current;
    block->states[me] = AT_BARRIER;
    swapcontext(&block->contexts[me], &block->scheduler);
    return OK;
}

// Runs body(args) as every thread of every block of the grid. `shared_buffer` (`shared_capacity` bytes) is the
// dynamic shared memory; `shared_bytes` is what the launch asked for.
inline int launch(dim3 grid, dim3 block_dim, size_t shared_bytes, unsigned char* shared_buffer,
                  size_t shared_capacity, void (*body)(void*), void* args) {
    const unsigned long long threads = (unsigned long long)block_dim.x * block_dim.y * block_dim.z;
    if (threads == 0 || threads > MAX_THREADS_PER_BLOCK) return BAD_BLOCK;
    if (shared_bytes > shared_capacity) return SHARED_TOO_LARGE;
    if (running_block != nullptr) return NESTED_LAUNCH;
    while (fiber_stacks.size() < threads) fiber_stacks.emplace_back(new char[FIBER_STACK_BYTES]);
    Block block;
    block.body = body;
    block.body_args = args;
    block.contexts.resize(threads);
    block.states.resize(threads);
    running_block = &block;
    gridDim = grid;
    blockDim = block_dim;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = dim3{bx, by, bz};
                std::memset(shared_buffer, 0xFF, shared_capacity);
                for (unsigned t = 0; t < threads; ++t) {
                    ucontext_t& ctx = block.contexts[t];
                    getcontext(&ctx);
                    ctx.uc_stack.ss_sp = fiber_stacks[t].get();
                    ctx.uc_stack.ss_size = FIBER_STACK_BYTES;
                    ctx.uc_link = &block.scheduler;
                    makecontext(&ctx, fiber_entry, 0);
                    block.states[t] = RUNNING;
                }
                // Rounds: every unfinished thread runs until its next barrier or its end; a round that ends with
                // a thread at the barrier releases them all for the next round.
                bool any_waiting = true;
                while (any_waiting) {
                    any_waiting = false;
                    for (unsigned t = 0; t < threads; ++t) {
                        if (block.states[t] == DONE) continue;
                        block.states[t] = RUNNING;
                        block.current = t;
                        threadIdx = dim3{t % block_dim.x, (t / block_dim.x) % block_dim.y,
                                         t / (block_dim.x * block_dim.y)};
                        swapcontext(&block.scheduler, &block.contexts[t]);
                        if (block.states[t] == AT_BARRIER) any_waiting = true;
                    }
                }
            }
    running_block = nullptr;
    return OK;
}

// The kernel call `call` (a lambda binding the kernel's arguments) as a launch.
template <typename Call>
int launch_call(dim3 grid, dim3 block_dim, size_t shared_bytes, unsigned char* shared_buffer,
                size_t shared_capacity, Call& call) {
    return launch(grid, block_dim, shared_bytes, shared_buffer, shared_capacity,
                  [](void* p) { (*static_cast<Call*>(p))(); }, &call);
}

}  // namespace hostcuda

inline void __syncthreads() {
    if (hostcuda::barrier() != hostcuda::OK) std::abort();  // __syncthreads outside a kernel: a harness bug
}

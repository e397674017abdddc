// Counters of how the CPU layer ops ran their step loops and products (layer_kernel.cpp), for tests and
// diagnosis: fusedrnn._C.loop_stats().
#pragma once

#include <cstdint>

namespace fusedrnn {
namespace cpu_loop {

struct Stats {
  int64_t unit_split_forward;   // forward step loops run with the hidden units split between threads
  int64_t unit_split_backward;  // backward step loops run so
  int64_t unit_split_step_proj;  // of the forward ones, those projecting each step's input themselves
  int64_t column_split_products;  // whole-sequence input projections of few rows split by W's rows
};
Stats stats();

}  // namespace cpu_loop
}  // namespace fusedrnn

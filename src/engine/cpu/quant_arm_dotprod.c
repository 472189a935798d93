/* quant_arm_dotprod.c - the aarch64 quantized kernels at the "dotprod" level:
 * quant_arm_kern.h compiled with ARM_LEVEL 2 (CMakeLists.txt gives this file
 * its -march flags). Empty on other architectures. */
#define ARM_LEVEL 2
#define ARM_ENTRY quant_arm_matmul_dotprod
#include "quant_arm_kern.h"

// The fp32 peak microbenchmark (peak.c).
int kiln_peak_kind(void);               // 2: AVX-512, 1: AVX2+FMA, 0: portable loop
double kiln_peak_flops_per_iter(void);  // flops one iteration of kiln_peak_run does
float kiln_peak_run(long iters);        // the loop; the result only defeats dead-code removal

void kiln_sgu_gate_f32(float *out, float *vm, const float *z, const float *b, long t, long d);
void kiln_sgu_gate_backward_f32(float *dvm, float *dz, double *db, const float *dout, const float *z, const float *vm,
                                long t, long d);

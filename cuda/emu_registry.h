// emu_registry.h: how an emulated kernel file makes its kernels launchable by
// name. Each wrapper cuda/emu_<family>.cc includes kernels/<family>.cu and
// registers its kernels with KILN_EMU_KERNEL(name); internal/kernelgen writes
// the wrappers from the .cu files (go generate ./engine), so none is edited
// by hand.
#pragma once
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../kernels/cuda_emu.h"

// invoke calls fn with the arguments params points at, each read at the exact
// size of the kernel's parameter type (as cuLaunchKernel reads them).
typedef void (*kiln_emu_invoke_fn)(void* fn, void** params);

template <typename... A, std::size_t... I>
static void kiln_emu_call(void (*fn)(A...), void** params, std::index_sequence<I...>) {
	fn(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}

template <typename... A>
static void kiln_emu_invoke(void* fn, void** params) {
	kiln_emu_call(reinterpret_cast<void (*)(A...)>(fn), params, std::index_sequence_for<A...>{});
}

extern "C" void kiln_emu_register(const char* name, void* fn, kiln_emu_invoke_fn invoke, int nparams);

template <typename... A>
struct KilnEmuRegistrar {
	KilnEmuRegistrar(const char* name, void (*fn)(A...)) {
		kiln_emu_register(name, reinterpret_cast<void*>(fn), &kiln_emu_invoke<A...>, sizeof...(A));
	}
};

#define KILN_EMU_KERNEL(name) static KilnEmuRegistrar kiln_emu_reg_##name(#name, &name)

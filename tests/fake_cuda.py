"""A CUDA device without a GPU, for device-placement tests: inside `with fake_cuda() as gpu:`
the project's CUDA code paths run on a CPU-only PyTorch, every CUDA tensor a FakeTensor
(torch._subclasses.fake_tensor) of device cuda:0, and a tensor on the wrong device fails as
it would on a GPU.

How it works

* CPU tensors stay real CPU tensors: schedules, numpy-made batches and whatever the code
  computes on the host keep their values, as on a GPU machine.
* CUDA tensors are FakeTensors: shape, dtype, device and autograd history, no values. A torch
  function mode (`FakeCuda`) sends every call that makes a CUDA tensor (a factory with
  device='cuda', `Tensor.to('cuda')`, `Tensor.cuda()`, `nn.Module.to`) to a FakeTensorMode,
  which propagates devices as a GPU does: an op mixing a CUDA tensor with a CPU tensor of one
  element or more raises "Expected all tensors to be on the same device" (CPU scalars of zero
  dimensions are allowed, as on a GPU); indexing a CPU tensor with CUDA indices raises too.
* Random draws check their generator's device type against the device they draw on, as
  PyTorch does on a GPU ("Expected a 'cuda' device type for generator but found 'cpu'").
  torch.Generator(device='cuda') gives a stand-in (`FakeCudaGenerator`) that reports cuda:0
  and has the 16-byte (seed, offset) state of a CUDA (Philox) generator: a CPU generator's
  state cannot be set on it, as on a GPU.
* The host boundary. A fake tensor holds no values, so reading one gives zeros of the right
  shape and type, after the checks a GPU makes: `.numpy()` (or np.asarray) of a CUDA tensor
  raises as on a GPU, so a missing `.cpu()` fails; `.cpu().numpy()` gives zeros of the
  tensor's shape and numpy dtype; `.item()`, `float()`, `int()`, `bool()`, `.tolist()` give
  zeros (reading a CUDA scalar is legal on a GPU). Every read is recorded in `gpu.reads` as
  (what, device of the tensor read, shape), and so is every copy of a fake CUDA tensor to the
  host ("to_host": `.cpu()`, `.to('cpu')`), so a test can assert what was read and from
  where. torch.save writes a fake tensor as zeros of its shape and dtype on the CPU, what
  torch.load(map_location='cpu') of a GPU run's file gives ("save" in `gpu.reads`).
  `.pin_memory()` of a CPU tensor returns it (pinning needs a CUDA driver) and raises for any
  other, as PyTorch does.
* torch.cuda is patched to describe `devices` GPUs (1 by default): initialisation (a no-op;
  PyTorch's C++ side then takes CUDA as initialised for the rest of the process, which only
  changes the message of a later real CUDA call on a CPU-only build), is_available,
  device_count, current_device, is_bf16_supported, get_device_properties / mem_get_info
  (80 GiB), synchronize, and the per-device RNG states (get/set_rng_state(_all),
  manual_seed(_all)), 16-byte uint8 CPU tensors as on a GPU, refusing a device index beyond
  `devices` ("invalid device ordinal"). With is_available true, torch.autocast('cuda') and
  torch.amp.GradScaler('cuda') run for real: autocast casts the fake CUDA ops (their outputs
  have the autocast dtype), and the scaler scales, unscales and updates on cuda:0.
* Autograd. Recording an op on a CUDA tensor asks the device's guard for its stream; a
  CPU-only build has no CUDA guard, so for the block the Meta device's no-op guard is lent to
  CUDA (`_borrowed_cuda_guard`). Autograd's engine itself cannot run on CUDA tensors without
  a CUDA runtime (it asks the accelerator for its current stream), so `Tensor.backward()` of a
  fake tensor does not run it: it walks the recorded graph and gives every leaf it reaches a
  gradient of the leaf's own shape, dtype and device, accumulated as backward does; that is
  where autograd puts a leaf's gradient on a GPU too. Device mistakes show in the forward
  pass, the loss, the scaler and the optimizer step, which all run.

Numbers are meaningless under the harness: tests assert devices, dtypes and shapes. It relies
on PyTorch internals (FakeTensorMode, the device-guard registry of libc10) and is written
against PyTorch 2.13.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from types import SimpleNamespace
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE_GPU_MEMORY = 80 * 2 ** 30
_PHILOX_DEFAULT_SEED = 67280421310721       # a fresh CUDA generator's seed
_REAL_GENERATOR = torch.Generator
_REAL_SAVE = torch.save

# Reads of a tensor's values, answered with zeros for a fake tensor.
_SCALAR_READS = {torch.Tensor.item: "item", torch.Tensor.__float__: "float", torch.Tensor.__int__: "int",
                 torch.Tensor.__bool__: "bool", torch.Tensor.__index__: "index", torch.Tensor.tolist: "tolist"}
_NUMPY_READS = {torch.Tensor.numpy: "numpy", torch.Tensor.__array__: "numpy"}
# Factories that take their values as data.
_FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}


def is_fake(x) -> bool:
    return isinstance(x, FakeTensor)


def on_cuda(tensor, shape=None) -> bool:
    """Whether tensor is a fake CUDA tensor on cuda:0 (and of `shape`, when given)."""
    return (is_fake(tensor) and tensor.device == torch.device("cuda", 0)
            and (shape is None or tuple(tensor.shape) == tuple(shape)))


# ---------------------------------------------------------------------------- CUDA generators

class FakeCudaGenerator(torch.Generator):
    """The stand-in for torch.Generator(device='cuda'): reports its CUDA device and keeps a CUDA
    generator's state, 16 bytes of (seed, offset); the draws made with it are fake anyway."""

    def __new__(cls, device="cuda"):
        return super().__new__(cls)

    def __init__(self, device="cuda"):
        device = torch.device(device)
        self._device = torch.device("cuda", device.index or 0)
        self._seed, self._offset = _PHILOX_DEFAULT_SEED, 0

    @property
    def device(self) -> torch.device:
        return self._device

    def manual_seed(self, seed):
        self._seed, self._offset = int(seed) & (2 ** 64 - 1), 0
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> torch.Tensor:
        return _philox_state(self._seed, self._offset)

    def set_state(self, new_state: torch.Tensor):
        self._seed, self._offset = _check_philox_state(new_state)
        return self


def _philox_state(seed: int, offset: int) -> torch.Tensor:
    return torch.tensor(list(struct.pack("<QQ", seed, offset)), dtype=torch.uint8)


def _check_philox_state(state: torch.Tensor) -> tuple[int, int]:
    """(seed, offset) of a CUDA generator state; raises, as CUDA's set_state does, for another size."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise TypeError("expected a torch.ByteTensor as the CUDA RNG state")
    if state.numel() != 16:
        raise RuntimeError(f"RNG state is wrong size (a CUDA generator's is 16 bytes, got {state.numel()})")
    return struct.unpack("<QQ", bytes(state.tolist()))


class _GeneratorType(type(_REAL_GENERATOR)):
    """Keeps isinstance(x, torch.Generator) true for every generator while the harness's class
    stands in for torch.Generator."""

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _REAL_GENERATOR)

    def __subclasscheck__(cls, sub) -> bool:
        return issubclass(sub, _REAL_GENERATOR)


class _Generator(_REAL_GENERATOR, metaclass=_GeneratorType):
    """torch.Generator under the harness: the stand-in for a CUDA device, PyTorch's own otherwise."""

    def __new__(cls, device=None):
        if device is not None and torch.device(device).type == "cuda":
            return FakeCudaGenerator(device)
        return _REAL_GENERATOR() if device is None else _REAL_GENERATOR(device)


# ---------------------------------------------------------------------------- the mode

class _CpuOnlyFakeTensorMode(FakeTensorMode):
    """FakeTensorMode as on a machine without CUDA, whatever torch.cuda.is_available() says under
    the harness: no CUDA tensor is ever made real by constant propagation."""

    @property
    def avoid_device_init(self) -> bool:
        return True


def _device_of(args, kwargs) -> torch.device:
    """The device a call makes its result on: its `device` argument, else its first tensor's."""
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


class FakeCuda(TorchFunctionMode):
    """The torch function mode of the harness, and the fake GPUs' torch.cuda state (see the
    module docstring). `reads`: the reads, host copies and saves of fake tensors, in order, as
    (what, the tensor's device, its shape)."""

    def __init__(self, devices: int = 1):
        super().__init__()
        self.devices = devices
        self.fake_mode = _CpuOnlyFakeTensorMode(allow_non_fake_inputs=True)
        self.reads: list[tuple[str, torch.device, tuple]] = []
        self.rng_states = {i: _philox_state(_PHILOX_DEFAULT_SEED, 0) for i in range(devices)}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SCALAR_READS or func in _NUMPY_READS:
            return self._read(func, args, kwargs)
        if func is torch.Tensor.pin_memory:
            return self._pin(args[0])
        if func is torch.Tensor.backward and is_fake(args[0]):
            return self._backward(*args, **kwargs)
        if kwargs.get("generator") is not None:
            self._check_generator(kwargs["generator"], _device_of(args, kwargs))
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            self._check_indices(args[0], args[1])
        if func is torch.Tensor.cpu and is_fake(args[0]):
            self.reads.append(("to_host", args[0].device, tuple(args[0].shape)))
        if func is torch.Tensor.cuda:
            return self._to_cuda(args[0], *self._cuda_target(*args[1:], **kwargs))
        if func is torch.Tensor.to:
            copy = kwargs.pop("copy", False)
            device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if device is not None and device.type == "cuda":
                return self._to_cuda(args[0], device, non_blocking, dtype, copy)
            if device is not None and is_fake(args[0]) and args[0].device != device:
                self.reads.append(("to_host", args[0].device, tuple(args[0].shape)))
            kwargs["copy"] = copy
        elif kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "cuda":
            return self._make_on_cuda(func, args, kwargs)
        if any(is_fake(x) for x in tree_flatten((args, kwargs))[0]):
            with self.fake_mode:             # tensors it makes on the way (list indices) are fake, too
                return func(*args, **kwargs)
        return func(*args, **kwargs)

    def _make_on_cuda(self, func, args, kwargs):
        """A factory call with device='cuda': data given (torch.tensor and the like) is made on
        the CPU and copied; anything else is made by the fake mode."""
        device = kwargs["device"]
        self._check_index(device)
        if func in _FROM_DATA:
            return self._to_cuda(func(*args, **{**kwargs, "device": "cpu"}), torch.device(device))
        with self.fake_mode:
            return func(*tree_map(self._fakeify, args), **tree_map(self._fakeify, kwargs))

    def _fakeify(self, x):
        """A real tensor as a fake one on its own device (so that no value is propagated)."""
        return self.fake_mode.from_tensor(x) if isinstance(x, torch.Tensor) and not is_fake(x) else x

    def _to_cuda(self, tensor, device, non_blocking=False, dtype=None, copy=False):
        """tensor copied to a fake CUDA device (itself when it is there already), as Tensor.to does."""
        device = torch.device("cuda", self._check_index(device))
        if tensor.device == device and dtype in (None, tensor.dtype) and not copy:
            return tensor
        with self.fake_mode:
            return torch.ops.aten._to_copy.default(self._fakeify(tensor), dtype=dtype or tensor.dtype,
                                                   device=device, non_blocking=non_blocking)

    @staticmethod
    def _cuda_target(device=None, non_blocking=False, memory_format=None):
        """Tensor.cuda's arguments as (device, non_blocking)."""
        if device is None or isinstance(device, int):
            return torch.device("cuda", device or 0), non_blocking
        return torch.device(device), non_blocking

    def _read(self, func, args, kwargs):
        """Values of a tensor: its own for a real tensor; zeros, recorded, for a fake one."""
        tensor = args[0]
        if not is_fake(tensor):
            return func(*args, **kwargs)
        name = _SCALAR_READS.get(func) or _NUMPY_READS[func]
        if name == "numpy" and tensor.device.type != "cpu":
            raise TypeError(f"can't convert {tensor.device} device type tensor to numpy. "
                            f"Use Tensor.cpu() to copy the tensor to host memory first.")
        self.reads.append((name, tensor.device, tuple(tensor.shape)))
        return func(torch.zeros(tensor.shape, dtype=tensor.dtype), *args[1:], **kwargs)

    def save(self, obj, f, *args, **kwargs):
        """torch.save under the harness: a fake tensor is written as zeros of its shape and dtype on
        the CPU (what torch.load(map_location='cpu') of a GPU's file gives), and recorded in
        `reads` as ("save", its device, its shape)."""
        def host(x):
            if not is_fake(x):
                return x
            self.reads.append(("save", x.device, tuple(x.shape)))
            return torch.zeros(x.shape, dtype=x.dtype)

        return _REAL_SAVE(tree_map(host, obj), f, *args, **kwargs)

    @staticmethod
    def _pin(tensor):
        if tensor.device.type != "cpu":
            raise RuntimeError(f"cannot pin '{tensor.device}' memory: only dense CPU tensors can be pinned")
        return tensor

    @staticmethod
    def _backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Tensor.backward of a fake tensor: every leaf of its graph gets a gradient of its own
        shape, dtype and device (see the module docstring), after backward's own checks."""
        if tensor.grad_fn is None:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None and tensor.numel() != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        if gradient is not None and gradient.device != tensor.device:
            raise RuntimeError(f"gradient on {gradient.device} for a tensor on {tensor.device}")
        seen, stack = set(), [tensor.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            leaf = getattr(node, "variable", None)                     # an AccumulateGrad node
            if leaf is not None:
                grad = torch.zeros_like(leaf, memory_format=torch.preserve_format)
                leaf.grad = grad if leaf.grad is None else leaf.grad + grad
            stack.extend(next_node for next_node, _ in node.next_functions)

    @staticmethod
    def _check_indices(tensor, index) -> None:
        """Index tensors must be on the CPU or on the indexed tensor's device, as on a GPU (fake
        tensors would give a CPU result for a CPU tensor indexed on CUDA)."""
        for i in tree_flatten(index)[0]:
            if isinstance(i, torch.Tensor) and i.device.type != "cpu" and i.device != tensor.device:
                raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed "
                                   f"tensor ({tensor.device})")

    @staticmethod
    def _check_generator(generator, device: torch.device) -> None:
        if generator.device.type != device.type:
            raise RuntimeError(f"Expected a '{device.type}' device type for generator but found "
                               f"'{generator.device.type}'")

    # ------------------------------------------------------------------ torch.cuda
    def _check_index(self, device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index
        index = 0 if index is None else index
        if not 0 <= index < self.devices:
            raise RuntimeError(f"CUDA error: invalid device ordinal (cuda:{index}; {self.devices} GPU(s) visible)")
        return index

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self.rng_states[self._check_index(device)].clone()

    def set_rng_state(self, new_state: torch.Tensor, device="cuda") -> None:
        index = self._check_index(device)
        _check_philox_state(new_state)
        self.rng_states[index] = new_state.clone()

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [self.get_rng_state(i) for i in range(self.devices)]

    def set_rng_state_all(self, new_states) -> None:
        for i, state in enumerate(new_states):
            self.set_rng_state(state, i)

    def manual_seed(self, seed: int) -> None:
        self.rng_states[0] = _philox_state(int(seed) & (2 ** 64 - 1), 0)      # the current device's

    def manual_seed_all(self, seed: int) -> None:
        for i in range(self.devices):
            self.rng_states[i] = _philox_state(int(seed) & (2 ** 64 - 1), 0)

    def properties(self, device=None) -> SimpleNamespace:
        self._check_index(0 if device is None else device)
        return SimpleNamespace(name="fake GPU", total_memory=FAKE_GPU_MEMORY, major=9, minor=0,
                               multi_processor_count=132)

    def cuda_patches(self) -> dict:
        """torch.cuda's functions that the project and PyTorch's amp call, as these fake GPUs answer."""
        return dict(
            _lazy_init=lambda: None, is_available=lambda: True, device_count=lambda: self.devices,
            current_device=lambda: 0, set_device=self._check_index, is_bf16_supported=lambda *a, **k: True,
            get_device_properties=self.properties,
            mem_get_info=lambda device=None: (FAKE_GPU_MEMORY, FAKE_GPU_MEMORY),
            synchronize=lambda device=None: None, empty_cache=lambda: None,
            get_rng_state=self.get_rng_state, set_rng_state=self.set_rng_state,
            get_rng_state_all=self.get_rng_state_all, set_rng_state_all=self.set_rng_state_all,
            manual_seed=self.manual_seed, manual_seed_all=self.manual_seed_all)


# ---------------------------------------------------------------------------- autograd

@contextlib.contextmanager
def _borrowed_cuda_guard():
    """For the block, the Meta device's no-op device guard registered for CUDA where PyTorch has
    none (a CPU-only build): autograd asks the guard of every CUDA tensor it records for the
    tensor's stream. The registry is libc10's table of guards, indexed by device type."""
    cuda, meta = int(torch._C._autograd.DeviceType.CUDA), int(torch._C._autograd.DeviceType.Meta)
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    libraries = [os.path.join(folder, name) for name in ("libc10.so", "libc10.dylib", "c10.dll")]
    try:
        library = ctypes.CDLL(next(path for path in libraries if os.path.isfile(path)))
        table = (ctypes.c_void_p * (max(cuda, meta) + 1)).in_dll(library, "_ZN3c104impl26device_guard_impl_registryE")
    except (StopIteration, OSError, ValueError) as e:
        raise RuntimeError(f"fake_cuda: libc10's device guard registry was not found ({e}); the harness "
                           f"needs it on a CPU-only PyTorch (Linux, macOS)") from e
    if table[cuda]:                          # a CUDA build: its own guard serves
        yield
        return
    table[cuda] = table[meta]
    try:
        yield
    finally:
        table[cuda] = None


@contextlib.contextmanager
def fake_cuda(devices: int = 1):
    """Run the block as on a machine with `devices` GPUs (see the module docstring); yields the
    FakeCuda mode, whose `reads` list the host reads of fake tensors."""
    mode = FakeCuda(devices)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_borrowed_cuda_guard())
        stack.enter_context(mock.patch.multiple(torch.cuda, **mode.cuda_patches()))
        stack.enter_context(mock.patch.object(torch, "Generator", _Generator))
        stack.enter_context(mock.patch.object(torch, "save", mode.save))
        stack.enter_context(mode)
        yield mode

"""A stand-in for the ``pynvml`` module (no GPU on the test machine), shared by the tests."""

from __future__ import annotations

import ctypes
from collections import Counter
from types import SimpleNamespace

MIB = 1024 * 1024


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - same name as pynvml
    def __init__(self) -> None:
        super().__init__(3)


class StandInNvml:
    """STAND-IN for the ``pynvml`` module: replays recorded values, measures nothing.

    Identity and versions come from real ``nvidia-smi -q`` output of a Tesla T4 posted in
    NVIDIA/k8s-device-plugin issue 390 (driver 525.89.02, CUDA 12.0, 15360 MiB). The
    operating values (utilisation, 27.9 W, 44 C, 1590/5000 MHz clocks) are typical of a T4
    running inference; encoder/decoder utilisation is recorded as unsupported to exercise
    the NotSupported path.
    """

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_GPU_UTILIZATION_SAMPLES = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, samples_supported: bool = True) -> None:
        self.inited = 0
        self.calls: Counter[str] = Counter()
        self.samples_supported = samples_supported
        # driver sample buffer: (timestamp µs, utilisation %)
        self.util_samples = [(1_700_000_000_000_000, 10), (1_700_000_000_166_000, 40)]
        self.procs = [
            SimpleNamespace(pid=4242, usedGpuMemory=1536 * MIB),
            SimpleNamespace(pid=4300, usedGpuMemory=None),  # no permission → None
            SimpleNamespace(pid=999, usedGpuMemory=900 * MIB),  # another container
        ]
        self.proc_util = [
            SimpleNamespace(pid=4242, timeStamp=1_700_000_000_100_000, smUtil=55, memUtil=20),
            SimpleNamespace(pid=4242, timeStamp=1_700_000_000_200_000, smUtil=61, memUtil=21),
            SimpleNamespace(pid=4300, timeStamp=1_700_000_000_200_000, smUtil=3, memUtil=1),
            SimpleNamespace(pid=999, timeStamp=1_700_000_000_200_000, smUtil=30, memUtil=9),
        ]

    def nvmlInit(self):  # noqa: N802
        self.inited += 1

    def nvmlShutdown(self):  # noqa: N802
        self.inited -= 1

    def nvmlDeviceGetCount(self):  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802
        # like pynvml's handles (ctypes pointers, LP_struct_c_nvmlDevice_t): not hashable
        return ctypes.pointer(ctypes.c_int(i))

    def nvmlDeviceGetName(self, h):  # noqa: N802
        return "Tesla T4"

    def nvmlDeviceGetUUID(self, h):  # noqa: N802
        return "GPU-84b0bf9a-67bf-493c-9214-4fad8b125a6d"

    def nvmlSystemGetDriverVersion(self):  # noqa: N802
        return "525.89.02"

    def nvmlSystemGetCudaDriverVersion(self):  # noqa: N802
        return 12000

    def nvmlDeviceGetSamples(self, h, kind, last_seen):  # noqa: N802
        self.calls["nvmlDeviceGetSamples"] += 1
        if not self.samples_supported:
            raise NVMLError_NotSupported()
        vals = [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=v))
            for t, v in self.util_samples
            if t > last_seen
        ]
        return (1, vals)  # NVML_VALUE_TYPE_UNSIGNED_INT

    def nvmlDeviceGetUtilizationRates(self, h):  # noqa: N802
        return SimpleNamespace(gpu=37, memory=18)

    def nvmlDeviceGetMemoryInfo(self, h):  # noqa: N802
        return SimpleNamespace(total=15360 * MIB, used=2436 * MIB, free=12924 * MIB)

    def nvmlDeviceGetPowerUsage(self, h):  # noqa: N802
        return 27_923  # mW

    def nvmlDeviceGetTemperature(self, h, sensor):  # noqa: N802
        return 44

    def nvmlDeviceGetClockInfo(self, h, kind):  # noqa: N802
        return {1: 1590, 2: 5000}[kind]

    def nvmlDeviceGetEncoderUtilization(self, h):  # noqa: N802
        raise NVMLError_NotSupported()

    def nvmlDeviceGetDecoderUtilization(self, h):  # noqa: N802
        raise NVMLError(999)  # unknown error: also a missing value

    def nvmlDeviceGetComputeRunningProcesses(self, h):  # noqa: N802
        return self.procs[:1] + self.procs[2:]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):  # noqa: N802
        return self.procs[1:2]

    def nvmlDeviceGetProcessUtilization(self, h, last_seen):  # noqa: N802
        return [s for s in self.proc_util if s.timeStamp > last_seen]

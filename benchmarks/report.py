"""Re-exports the output helpers of :mod:`benchmarks._common` (their former home) for older imports."""

from __future__ import annotations

from ._common import dense_matmul_flops, format_table, machine_info, prepare_out, write_json

__all__ = ["dense_matmul_flops", "format_table", "machine_info", "prepare_out", "write_json"]

"""The ``system`` table: CPU, memory and GPU samples of each run's processes (issue 16).

One row per sample for the process and its host (``gpu_index`` NULL) and one per GPU;
units are in the column names. See docs/system.md.
"""

from __future__ import annotations

import duckdb

VERSION = 3
DESCRIPTION = "system metrics: the system table"

DDL = """CREATE TABLE system (
    run_id VARCHAR, seq BIGINT, ts TIMESTAMP, host VARCHAR, pid BIGINT,
    gpu_index BIGINT, gpu_uuid VARCHAR, gpu_name VARCHAR,
    cpu_percent DOUBLE, rss_bytes BIGINT,
    host_cpu_percent DOUBLE, host_mem_used_bytes BIGINT, host_mem_total_bytes BIGINT,
    host_mem_percent DOUBLE, load_1m DOUBLE, load_5m DOUBLE, load_15m DOUBLE,
    disk_read_bytes_per_s DOUBLE, disk_write_bytes_per_s DOUBLE,
    net_recv_bytes_per_s DOUBLE, net_sent_bytes_per_s DOUBLE,
    gpu_util_percent DOUBLE, gpu_mem_used_bytes BIGINT, gpu_mem_total_bytes BIGINT,
    gpu_power_w DOUBLE, gpu_temp_c DOUBLE, gpu_sm_clock_mhz DOUBLE, gpu_proc_mem_bytes BIGINT,
    extra JSON)"""


def up(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)

#!/bin/sh
# Runs every repro (mpm, then the nginx comparisons) and prints what each measured.
cd "$(dirname "$0")"
PY=${PY:-/work/main/.venv/bin/python}
for s in r01_slow_reader_stream_buffers.py r02_one_byte_window_updates_copy_held_read.py \
         r03_connection_window_and_settings_resume_all_streams.py r04_fairness_bulk_h2_vs_victims.py \
         r05_websocket_over_h2_slow_reader.py r06_header_block_cpu.py \
         c06_rst_and_vanishing_clients_release.py c07_uploads_to_a_stalled_backend.py; do
    echo "=== $s"; $PY "$s"
done
for s in r01_slow_reader_stream_buffers.py r02_one_byte_window_updates_copy_held_read.py \
         r03_connection_window_and_settings_resume_all_streams.py r04_fairness_bulk_h2_vs_victims.py \
         r06_header_block_cpu.py; do
    echo "=== $s --nginx"; $PY "$s" --nginx
done
echo "=== r06_header_block_cpu.py --default-limits"; $PY r06_header_block_cpu.py --default-limits

#!/bin/sh
# Each script exits 1 when the finding reproduces, 0 when it does not.  MPM_ROOT defaults to
# /tmp/review-today (a clone of /work/main with conf/*.so copied in); /tmp/review-base is a406ab1.
cd "$(dirname "$0")"
PY=/work/main/.venv/bin/python
for f in r01_h2_inflight_data_after_early_response.py r01b_h2_split_headers_then_small_data.py \
         r07_no_pwritev2_worker_crash_loop.py r06_tty_stdout_not_reopenable_blocks.py \
         r03_reopen_against_a_master_of_the_previous_release.py r05_eopnotsupp_fallback_leaks_nonblock.py \
         r02_reopen_during_upgrade_misses_the_new_master.py r04_h2_host_vs_authority_same_origin_refused.py \
         r09_workers_keep_the_masters_old_error_log.py; do
  echo "== $f"; timeout 120 $PY "$f"; echo "rc=$?"
done

"""One event worker process: selector loop, HTTP/1.1 exchanges, routing, backend pool, logs."""

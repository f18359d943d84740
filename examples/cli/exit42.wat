;; A wasi:cli/command written against WASI 0.2 itself (no preview 1
;; adapter): its run exits with status 42 through wasi:cli/exit's
;; exit-with-code, which the adapter's proc_exit does not use (it knows
;; only success and failure).
(module
  (import "wasi:cli/exit@0.2.12" "exit-with-code" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "wasi:cli/run@0.2.12#run") (result i32)
    (call $exit (i32.const 42))
    (i32.const 0)))

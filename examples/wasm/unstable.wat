;; A preview 0 (`wasi_unstable`) command, as older toolchains emit: prints
;; its argument count and a greeting, then exits 7 through proc_exit.
(module
  (import "wasi_unstable" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_unstable" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "argc=? from wasi_unstable\n")
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 64) (i32.const 68)))
    ;; One digit is enough for the tests' argument counts.
    (i32.store8 (i32.const 37) (i32.add (i32.const 48) (i32.load (i32.const 64))))
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 26))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 7))))

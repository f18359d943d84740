;; write FILE TEXT: creates (or truncates) FILE, relative to the first
;; preopen (fd 3; leading slashes skipped), holding TEXT and a newline.
;; Exits with the WASI errno when the file cannot be opened or written,
;; 2 without both arguments.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func (export "_start")
    (local $p i32) (local $text i32) (local $fd i32) (local $err i32) (local $len i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 3)) (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 1024) (i32.const 8192)))
    (local.set $p (i32.load (i32.const 1028)))
    (local.set $text (i32.load (i32.const 1032)))
    (block $b (loop $l
      (br_if $b (i32.ne (i32.load8_u (local.get $p)) (i32.const 47)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l)))
    ;; oflags CREAT|TRUNC (9); rights FD_WRITE (64).
    (local.set $err (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (call $strlen (local.get $p))
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 24)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))
    (local.set $fd (i32.load (i32.const 24)))
    ;; The text and a newline in one buffer at 32768 (one iovec: a write
    ;; may take only the first of several).
    (local.set $len (call $strlen (local.get $text)))
    (memory.copy (i32.const 32768) (local.get $text) (local.get $len))
    (i32.store8 (i32.add (i32.const 32768) (local.get $len)) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 32768))
    (i32.store (i32.const 4) (i32.add (local.get $len) (i32.const 1)))
    (local.set $err (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 28)))
    (if (local.get $err) (then (call $proc_exit (local.get $err))))))

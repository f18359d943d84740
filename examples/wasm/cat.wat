;; cat FILE: copies a file of the container's rootfs (preopened as fd 3, "/") to stdout.
;; Exits 1 when the file cannot be opened, 2 without an argument.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $p i32) (local $len i32) (local $fd i32) (local $n i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2)) (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 1024) (i32.const 8192)))
    (local.set $p (i32.load (i32.const 1028)))
    ;; Paths are relative to the preopened "/": skip leading slashes.
    (block $b (loop $l
      (br_if $b (i32.ne (i32.load8_u (local.get $p)) (i32.const 47)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l)))
    (block $b2 (loop $l2
      (br_if $b2 (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $len)))))
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (br $l2)))
    ;; rights: FD_READ only, so a read-only rootfs is fine.
    (if (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (local.get $len)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24))
      (then (call $proc_exit (i32.const 1))))
    (local.set $fd (i32.load (i32.const 24)))
    (block $eof (loop $rd
      (i32.store (i32.const 0) (i32.const 16384))
      (i32.store (i32.const 4) (i32.const 32768))
      (br_if $eof (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 28)))
      (local.set $n (i32.load (i32.const 28)))
      (br_if $eof (i32.eqz (local.get $n)))
      (i32.store (i32.const 4) (local.get $n))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 28)))
      (br $rd)))))

;; Prints the name of every preopened directory, one a line (fd 3 on,
;; until fd_prestat_get says there are no more), as a guest finds them.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..8: prestat; 16..24: iovec; 32: nwritten; 64..: name buffer.
  (func (export "_start")
    (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        (br_if $done (i32.ne (call $prestat (local.get $fd) (i32.const 0)) (i32.const 0)))
        (local.set $len (i32.load (i32.const 4)))
        (br_if $done (i32.gt_u (local.get $len) (i32.const 4000)))
        (drop (call $dir_name (local.get $fd) (i32.const 64) (local.get $len)))
        (i32.store8 (i32.add (i32.const 64) (local.get $len)) (i32.const 10))
        (i32.store (i32.const 16) (i32.const 64))
        (i32.store (i32.const 20) (i32.add (local.get $len) (i32.const 1)))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))))

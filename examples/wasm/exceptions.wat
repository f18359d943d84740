;; Exception handling: throws a tagged exception carrying 42 through a
;; call and catches it with try_table; prints "caught 42".
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "caught 42\n")
  (tag $oops (param i32))
  (func $thrower (throw $oops (i32.const 42)))
  (func (export "_start")
    (block $handler (result i32)
      (try_table (catch $oops $handler) (call $thrower))
      (unreachable))
    (if (i32.ne (i32.const 42)) (then (unreachable)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))

package atomicfs

import "syscall"

// syscallNoFollow refuses to open a file through a symlink placed in the
// payload directory by anyone else.
const syscallNoFollow = syscall.O_NOFOLLOW

/**
 * The program that runs in the sandbox for every workspace operation (see workspace-files.ts), and
 * its exit codes. Kept apart because it is Python: one fixed program, the user's path reaching it
 * only as an argv element.
 */

/** Entries a listing or a snapshot returns at most. */
export const MAX_ENTRIES = 10_000;
/**
 * JSON bytes of entries a listing or a snapshot returns at most (the helper stops there and says
 * `truncated`); the exec's output cap is twice that, so only a helper that lies hits the cap.
 */
export const MAX_LISTING_BYTES = 4 * 1024 ** 2;

/** Exit codes of the helper, one per refusal. */
export const EXIT = {
  outside: 10,
  missing: 11,
  isDir: 12,
  notDir: 13,
  noSpace: 14,
  notRegular: 15,
  denied: 16,
  nameTooLong: 17,
  tooLarge: 18,
} as const;

/**
 * The helper. argv: `<op> <path> <max bytes> <seconds>`, path relative to /workspace. Exits 0 with
 * JSON on stdout (for `read`: a `<size>\n` line, then at most that many bytes of the file), or with
 * one of the codes of EXIT (for a file over `max bytes`: its size on stderr). It never echoes a
 * path's content on refusal. Listings stop at MAX_ENTRIES, MAX_LISTING_BYTES or half the time
 * (then `truncated`); `signal.alarm` ends it at its time. The gateway bounds it anyway (the kernel
 * can stop or feed it): this is for the honest case, a clear answer before the caps.
 * O_NONBLOCK keeps a FIFO from blocking an open.
 */
export const HELPER = String.raw`
import errno, json, os, signal, stat, sys, time
MAX_BYTES, SECONDS = int(sys.argv[3]), float(sys.argv[4])
signal.alarm(max(1, int(SECONDS) + 1))
T_END = time.monotonic() + SECONDS / 2
ROOT = '/workspace'
MAX_ENTRIES = ${MAX_ENTRIES}
MAX_LISTING_BYTES = ${MAX_LISTING_BYTES}
OUTSIDE, MISSING, IS_DIR, NOT_DIR, NO_SPACE, NOT_REGULAR, DENIED, NAME_TOO_LONG, TOO_LARGE = 10, 11, 12, 13, 14, 15, 16, 17, 18
ERRNO = {errno.ENOENT: MISSING, errno.EISDIR: IS_DIR, errno.ENOTDIR: NOT_DIR, errno.EEXIST: NOT_DIR,
         errno.ENOSPC: NO_SPACE, errno.EDQUOT: NO_SPACE, errno.EFBIG: NO_SPACE, errno.EACCES: DENIED,
         errno.EPERM: DENIED, errno.ELOOP: OUTSIDE, errno.ENXIO: NOT_REGULAR,
         errno.ENAMETOOLONG: NAME_TOO_LONG}

def inside(p):
    return p == ROOT or p.startswith(ROOT + '/')

def resolve(rel):
    p = os.path.realpath(os.path.join(ROOT, rel))
    if not inside(p):
        sys.exit(OUTSIDE)
    return p

def rel_of(p):
    return '' if p == ROOT else os.path.relpath(p, ROOT)

def kind(mode):
    if stat.S_ISDIR(mode): return 'directory'
    if stat.S_ISREG(mode): return 'file'
    if stat.S_ISLNK(mode): return 'symlink'
    return 'other'

def entry(p, st):
    return {'name': os.path.basename(p), 'path': rel_of(p), 'type': kind(st.st_mode),
            'size': st.st_size, 'mtime_ns': str(st.st_mtime_ns)}

def out(obj):
    sys.stdout.write(json.dumps(obj, separators=(',', ':')))

def open_regular(p, flags):
    fd = os.open(p, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode): sys.exit(IS_DIR)
    if not stat.S_ISREG(st.st_mode): sys.exit(NOT_REGULAR)
    os.set_blocking(fd, True)
    return fd

def op_list(rel):
    p = resolve(rel)
    if not stat.S_ISDIR(os.stat(p).st_mode): sys.exit(NOT_DIR)
    items, truncated, used = [], False, 0
    with os.scandir(p) as it:
        for e in it:
            if len(items) >= MAX_ENTRIES or used >= MAX_LISTING_BYTES or time.monotonic() > T_END:
                truncated = True
                break
            try:
                item = entry(e.path, e.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            items.append(item)
            used += len(json.dumps(item)) + 1
    items.sort(key=lambda i: i['name'])
    out({'path': rel_of(p), 'entries': items, 'truncated': truncated})

def op_read(rel):
    fd = open_regular(resolve(rel), os.O_RDONLY)
    # The size of the opened file, not of whatever the path names by now; a sparse file has any.
    size = os.fstat(fd).st_size
    w = sys.stdout.buffer
    if size > MAX_BYTES:
        sys.stderr.write(str(size))
        sys.exit(TOO_LARGE)
    w.write(b'%d\n' % size)
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk: break
        w.write(chunk)
        left -= len(chunk)
    w.flush()

def op_write(rel):
    p = resolve(rel)
    if p == ROOT: sys.exit(IS_DIR)
    # realpath resolved every existing component: what makedirs creates is inside ROOT.
    os.makedirs(os.path.dirname(p), exist_ok=True)
    created = not os.path.lexists(p)
    fd = open_regular(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    src = sys.stdin.buffer
    try:
        while True:
            chunk = src.read(1 << 20)
            if not chunk: break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    except OSError as e:
        if ERRNO.get(e.errno) == NO_SPACE:
            os.close(fd)
            os.unlink(p)
            sys.exit(NO_SPACE)
        raise
    st = os.fstat(fd)
    os.close(fd)
    out(dict(entry(p, st), created=created))

def op_delete(rel):
    full = os.path.join(ROOT, rel)
    # The last component itself is removed, not what it points to: resolve only its directory.
    parent = os.path.realpath(os.path.dirname(full))
    name = os.path.basename(full)
    if not inside(parent): sys.exit(OUTSIDE)
    if not name: sys.exit(IS_DIR)
    p = os.path.join(parent, name)
    if stat.S_ISDIR(os.lstat(p).st_mode):
        import shutil
        shutil.rmtree(p)
    else:
        os.unlink(p)
    out({'path': rel_of(p)})

def op_snapshot(_rel):
    files, truncated, used = [], False, 0
    for d, _dirs, names in os.walk(ROOT):
        for n in names:
            p = os.path.join(d, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode): continue
            if len(files) >= MAX_ENTRIES or used >= MAX_LISTING_BYTES or time.monotonic() > T_END:
                truncated = True
                break
            f = [rel_of(p), st.st_size, str(st.st_mtime_ns)]
            files.append(f)
            used += len(json.dumps(f)) + 1
        if truncated: break
    out({'files': files, 'truncated': truncated})

OPS = {'list': op_list, 'read': op_read, 'write': op_write, 'delete': op_delete, 'snapshot': op_snapshot}
try:
    OPS[sys.argv[1]](sys.argv[2])
except OSError as e:
    sys.exit(ERRNO.get(e.errno, 1))
`;

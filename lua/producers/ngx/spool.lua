--- producers.ngx's durable spool (issue #22, docs/design/spool.md I17):
-- the spool option's dir is a folder of folders, one per worker,
-- `<dir>/<pid>-<start ms>/`, each the spool of one producer. A worker
-- opens its own at init and, at start and every spool_adopt_interval
-- seconds, tries to adopt the others (p:spool_adopt): a folder whose lock
-- it gets belongs to a worker that is gone (a reload, a crash, a quit or
-- a restart during an outage), and its producer delivers what that
-- folder holds; a folder another worker holds is refused (SPOOL_LOCKED)
-- and tried again later.
--
-- Caveats: the folders are listed with LuaJIT's ffi (opendir/readdir of
-- glibc on a 64-bit Linux); without ffi, with `ls` through io.popen,
-- which blocks the worker for the fork. dir itself is made if missing
-- (with ffi; else it must exist), writable by the workers' user.
-- @module producers.ngx.spool

local ngx = ngx
local ngx_log, ERR, WARN, INFO = ngx.log, ngx.ERR, ngx.WARN, ngx.INFO
local pairs, type, tostring, pcall, floor = pairs, type, tostring, pcall, math.floor

local S = {}

local ok_ffi, ffi = pcall(require, "ffi")
local C
if ok_ffi then
  pcall(ffi.cdef, [[
    typedef struct prd_ngx_dir prd_ngx_dir;
    struct prd_ngx_dirent { uint64_t d_ino; int64_t d_off; unsigned short d_reclen;
                            unsigned char d_type; char d_name[256]; };
    prd_ngx_dir *opendir(const char *name);
    struct prd_ngx_dirent *readdir(prd_ngx_dir *d);
    int closedir(prd_ngx_dir *d);
    int mkdir(const char *path, unsigned int mode);
  ]])
  C = ffi.C
end

-- A worker's folder name: its pid and its start in ms (a pid nginx
-- reuses later gets another name).
local NAME = "^%d+%-(%d+)$"
-- Folders younger than this (s, by their name) are left alone: a worker
-- makes its folder, then locks it; adopting in between would refuse it its
-- own spool.
S.YOUNG = 5

--- The names in folder base (nil if it cannot be read).
function S.list(base)
  local names = {}
  if C then
    local d = C.opendir(base)
    if d == nil then return nil end
    while true do
      local e = C.readdir(d)
      if e == nil then break end
      names[#names + 1] = ffi.string(e.d_name)
    end
    C.closedir(d)
    return names
  end
  -- "/" (no file's name) says ls failed
  local f = io.popen("ls -1 -- '" .. base:gsub("'", "'\\''") .. "' 2>/dev/null || echo /")
  if not f then return nil end
  for line in f:lines() do
    if line == "/" then names = nil break end
    names[#names + 1] = line
  end
  f:close()
  return names
end

--- Before the producer is made: kafka.spool.dir (the folder of folders)
-- becomes this worker's own folder in it. Records on self: spool_base,
-- spool_own, spool_adopted (the set of folders adopted).
function S.prepare(self, kafka)
  local spool = kafka.spool
  if type(spool) ~= "table" or type(spool.dir) ~= "string" then return end
  local base = spool.dir:gsub("/+$", "")
  if C then C.mkdir(base, 448) end        -- 0700; EEXIST is fine
  ngx.update_time()
  local own = ("%d-%d"):format(self.pid, floor(ngx.now() * 1000))
  local copy = {}
  for k, v in pairs(spool) do copy[k] = v end
  copy.dir = base .. "/" .. own
  kafka.spool = copy
  self.spool_base, self.spool_own, self.spool_adopted = base, own, {}
end

-- Tries each other worker's folder once: adopted, or held by a live
-- worker (SPOOL_LOCKED: tried again next time), or a failure logged once.
function S.adopt_all(self)
  if self.closed or not self.spool_base then return end
  local names = S.list(self.spool_base)
  if not names then
    ngx_log(ERR, "producers: spool: cannot list ", self.spool_base)
    return
  end
  local p = self.producer
  ngx.update_time()
  local young = (ngx.now() - S.YOUNG) * 1000
  for _, name in pairs(names) do
    local started = tonumber(name:match(NAME))
    if started and started < young and name ~= self.spool_own and not self.spool_adopted[name] then
      local path = self.spool_base .. "/" .. name
      local called, ok, err, code = pcall(p.spool_adopt, p, path)
      if called and ok then
        self.spool_adopted[name] = true
        ngx_log(INFO, "producers: worker ", self.pid, " adopted the spool ", path)
      elseif not called or code ~= "SPOOL_LOCKED" then
        self.spool_adopted[name] = "failed"       -- logged once, not tried again
        ngx_log(WARN, "producers: spool: cannot adopt ", path, ": ", tostring(called and err or ok))
      end
    end
  end
end

local function tick(premature, self)
  if premature or ngx.worker.exiting() then return end
  local ok, err = pcall(S.adopt_all, self)
  if not ok then ngx_log(ERR, "producers: spool: adopting: ", err) end
end

--- After the producer is made: adopts now (a zero-delay timer) and every
-- settings.spool_adopt_interval seconds.
function S.start(self)
  if not self.spool_base then return end
  ngx.timer.at(0, tick, self)
  local ok, err = ngx.timer.every(self.settings.spool_adopt_interval, tick, self)
  if not ok then ngx_log(ERR, "producers: spool: cannot start the adoption timer: ", err) end
end

return S

-- Unsecured JWTs (RFC 7519 section 6: header {"alg":"none"}, empty
-- signature) for the OAUTHBEARER specs: what Kafka's built-in validator
-- (OAuthBearerUnsecuredValidatorCallbackHandler) accepts.
local M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

--- s in base64url, without padding.
function M.base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, chars do
      local idx = math.floor(n / 2 ^ (18 - 6 * (k - 1))) % 64
      out[#out + 1] = ALPHABET:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

--- An unsecured JWT for principal sub, valid from now (s since the
-- epoch) for lifetime_s seconds; returns the token, its expiry in ms
-- since the epoch and the encoded payload.
function M.unsecured(sub, lifetime_s, now, scope)
  now = now or os.time()
  local exp = now + lifetime_s
  local payload = M.base64url(('{"sub":"%s","iat":%d,"exp":%d,"scope":"%s"}')
    :format(sub, now, exp, scope or "produce"))
  return M.base64url('{"alg":"none"}') .. "." .. payload .. ".", exp * 1000, payload
end

return M

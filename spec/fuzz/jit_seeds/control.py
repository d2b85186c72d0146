def loops(n: int,
    flag: bool=False) -> List[int]:
  out = annotate(List[int], [])
  for i in range(n):
    if torch.eq(i, 3):
      continue
    elif flag and not torch.gt(i, 7):
      break
    else:
      pass
    _0 = torch.append(out, i)
  k = 0
  while torch.lt(k, 10):
    k = torch.add(k, 1); out[0] = k
  assert torch.ge(k, 10), "k"
  if torch.__is__(out, None):
    raise ops.prim.RaiseException("builtins.ValueError: no")
  a, b, = (1, 2)
  c = d = 3
  x : int = 4
  x += a ** 2 // b % 3
  del out[0]
  with torch.no_grad():
    y = -x if c is not None else ~d
  return out

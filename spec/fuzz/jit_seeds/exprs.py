import __torch__.torch.nn.functional
def exprs(x: Tensor,
    d: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
  s = "tab\there \"quoted\" \'single\' \\ \101\x41\n" 'joined'
  f = [1.0000000000000001e-05, 0., .5, 1e3, -9223372036854775808, 9223372036854775807, 0x1f, 0o17, 0b101]
  t = (x,)
  e = ()
  m = {"out": x, "aux": torch.neg(x)}
  y = x[:, 0:-1:2, ::3, 1:] if False else x[0, 1]
  z = (a | b ^ c & d << 1 >> 2) + e - f * g / h @ i
  w = (a == b) != c if ((a < b) <= (c > d)) >= e else a in b or a not in b and a is b
  r = torch.conv2d(x, w, None, [1, 1], padding=[0, 0], dilation=[1, 1], groups=1, )
  return (torch.view(r, [-1, ]), CONSTANTS.c0)

class Conv2d(Module):
  __parameters__ = ["weight", "bias", ]
  __buffers__ = []
  weight : Tensor
  bias : Optional[Tensor]
  training : bool
  __annotations__["0"] = __torch__.torch.nn.modules.conv.Conv2d
  padding : Final[Tuple[int, int]] = (1, 1)
  padding_mode : Final[str] = "zeros"
  def forward(self: __torch__.torch.nn.modules.conv.___torch_mangle_1.Conv2d,
    input: Tensor) -> Tensor:
    _0 = (self)._conv_forward(input, self.weight, self.bias, )
    _1 = getattr(self, "0")
    return _0
class Result(NamedTuple):
  boxes : Tensor
  scores : Tensor
class Colour(Enum):
  RED = 1

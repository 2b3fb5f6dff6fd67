"""Extra batch-1 latency points on the device: ResNet-50 tuned (cudnn.benchmark,
channels_last) and BERT-base seq 128, FP16, CUDA graph replay."""
import statistics, torch, torchvision
from transformers import BertConfig, BertModel

def time_cuda(fn, warmup=30, iters=200):
    for _ in range(warmup): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(iters):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    return ts

def graphed(model, x):
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3): model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): model(x)
    return g.replay

def report(name, ts):
    ts = sorted(ts); print(f"{name}: p50 {statistics.median(ts):.3f} ms, p99 {ts[int(0.99*len(ts))-1]:.3f} ms, n={len(ts)}")

torch.backends.cudnn.benchmark = True
card = torch.cuda.get_device_name(0); print(card, torch.__version__, torch.version.cuda)
with torch.inference_mode():
    m = torchvision.models.resnet50().eval().cuda().half().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.half).to(memory_format=torch.channels_last)
    report("ResNet-50 v1.5 b1 fp16 channels_last cudnn.benchmark eager", time_cuda(lambda: m(x)))
    report("ResNet-50 v1.5 b1 fp16 channels_last cudnn.benchmark graphs", time_cuda(graphed(m, x)))
    cfg = BertConfig()  # bert-base: 12 layers, hidden 768, 12 heads, ffn 3072
    b = BertModel(cfg).eval().cuda().half()
    ids = torch.randint(0, cfg.vocab_size, (1, 128), device="cuda")
    report("BERT-base b1 seq128 fp16 eager", time_cuda(lambda: b(ids)))
    report("BERT-base b1 seq128 fp16 graphs", time_cuda(graphed(lambda i: b(i), ids)))

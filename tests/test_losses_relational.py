"""RKD, PKT, SP and CRD against their reference formulas re-derived here in float64 with plain numpy loops (values,
gradients by finite differences, CRD's memory update), and each loss teaching a toy student."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TensorBank

from distill.losses import CRDLoss, PKTLoss, Progress, RKDLoss, SPLoss, nce_loss, pkt_loss, rkd_terms, sp_loss
from distill.outputs import EMBEDDING, ModelOutput


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def ref_rkd(s: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Park et al.: Huber over pairwise distances (each over the mean positive distance) and over all angle cosines."""
    def dists(e):
        b = len(e)
        d = np.array([[math.sqrt(sum((e[i, k] - e[j, k]) ** 2 for k in range(e.shape[1]))) for j in range(b)]
                      for i in range(b)])
        return d / d[d > 0].mean()

    def angles(e):
        b, out = len(e), []
        for j in range(b):
            for i in range(b):
                for k in range(b):
                    u, v = e[i] - e[j], e[k] - e[j]
                    nu, nv = max(np.sqrt((u * u).sum()), 1e-12), max(np.sqrt((v * v).sum()), 1e-12)
                    out.append(float((u / nu) @ (v / nv)))
        return np.array(out)

    ds, dt = dists(s), dists(t)
    dist = np.mean([huber(a - b) for a, b in zip(ds.ravel(), dt.ravel(), strict=True)])
    angle = np.mean([huber(a - b) for a, b in zip(angles(s), angles(t), strict=True)])
    return float(dist), float(angle)


def ref_pkt(s: np.ndarray, t: np.ndarray, eps: float = 1e-7) -> float:
    """Passalis & Tefas (authors' code): cosine kernel to [0, 1], rows to distributions, mean of P log((P+e)/(Q+e))."""
    def cond(e):
        b = len(e)
        n = [e[i] / (math.sqrt(sum(v * v for v in e[i])) + eps) for i in range(b)]
        k = np.array([[(float(n[i] @ n[j]) + 1) / 2 for j in range(b)] for i in range(b)])
        return np.array([k[i] / k[i].sum() for i in range(b)])

    p, q = cond(t), cond(s)
    b = len(s)
    return sum(p[i, j] * math.log((p[i, j] + eps) / (q[i, j] + eps)) for i in range(b) for j in range(b)) / (b * b)


def ref_sp(s: np.ndarray, t: np.ndarray) -> float:
    """Tung & Mori: row-normalised Gram matrices, squared Frobenius distance over B^2."""
    def gram(e):
        b = len(e)
        g = np.array([[float(e[i] @ e[j]) for j in range(b)] for i in range(b)])
        return np.array([g[i] / max(math.sqrt((g[i] ** 2).sum()), 1e-12) for i in range(b)])

    b = len(s)
    return float(((gram(t) - gram(s)) ** 2).sum() / (b * b))


def batch(seed: int = 0, b: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, 4)), np.abs(rng.normal(size=(b, 6))) * 3  # student, teacher (ReLU-like, wider)


def test_rkd_equals_the_reference_in_float64_and_float32():
    s, t = batch()
    want = ref_rkd(s, t)
    for dtype, rel in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        got = rkd_terms(torch.tensor(s, dtype=dtype), torch.tensor(t, dtype=dtype))
        assert [float(v) for v in got] == pytest.approx(want, rel=rel)
    assert want[0] > 0.01 and want[1] > 0.01  # both terms are live on this batch


def test_pkt_and_sp_equal_the_reference():
    s, t = batch(1)
    assert float(pkt_loss(torch.tensor(s), torch.tensor(t))) == pytest.approx(ref_pkt(s, t), rel=1e-10)
    assert float(sp_loss(torch.tensor(s), torch.tensor(t))) == pytest.approx(ref_sp(s, t), rel=1e-10)
    assert ref_pkt(s, t) > 1e-4 and ref_sp(s, t) > 1e-3


@pytest.mark.parametrize("name", ["distance", "angle", "pkt", "sp"])
def test_gradients_equal_finite_differences_of_the_reference(name):
    """The student gradient against central differences of the numpy reference (a sign error fails it); the teacher
    gets none."""
    s, t = batch(2, b=4)
    fn = {"distance": lambda a, b: rkd_terms(a, b)[0], "angle": lambda a, b: rkd_terms(a, b)[1],
          "pkt": pkt_loss, "sp": sp_loss}[name]
    ref = {"distance": lambda a, b: ref_rkd(a, b)[0], "angle": lambda a, b: ref_rkd(a, b)[1],
           "pkt": ref_pkt, "sp": ref_sp}[name]
    st, tt = torch.tensor(s, requires_grad=True), torch.tensor(t, requires_grad=True)
    fn(st, tt).backward()
    h, numeric = 1e-6, np.zeros_like(s)
    for idx in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (ref(up, t) - ref(down, t)) / (2 * h)
    np.testing.assert_allclose(st.grad.numpy(), numeric, rtol=1e-4, atol=1e-8)
    assert tt.grad is None or not tt.grad.any()


def _outputs(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[ModelOutput, ModelOutput]:
    return (ModelOutput(torch.zeros(len(s), 3, dtype=s.dtype), {EMBEDDING: s}),
            ModelOutput(torch.zeros(len(t), 3, dtype=t.dtype), {EMBEDDING: t}))


def test_modules_weight_their_terms_as_documented():
    s, t = (torch.tensor(a) for a in batch(3))
    y = torch.tensor([0, 1, 2, 0, 1])
    student, teacher = _outputs(s, t, y)
    ce = F.cross_entropy(student.logits, y).item()
    d, a = ref_rkd(s.numpy(), t.numpy())
    out = RKDLoss(weight=2.0, distance_weight=25.0, angle_weight=50.0)(student, y, teacher)
    assert out.total.item() == pytest.approx(ce + 2 * (25 * d + 50 * a), rel=1e-10)
    assert PKTLoss()(student, y, teacher).total.item() == pytest.approx(ce + 30000 * ref_pkt(s.numpy(), t.numpy()))
    assert SPLoss()(student, y, teacher).total.item() == pytest.approx(ce + 3000 * ref_sp(s.numpy(), t.numpy()))


def _loss_value(loss, student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s_out, t_out = _outputs(student, teacher, y)
    return loss(s_out, y, t_out).total


@pytest.mark.parametrize("loss", [RKDLoss(), PKTLoss(), SPLoss()], ids=["rkd", "pkt", "sp"])
def test_each_relational_loss_teaches_a_linear_student_the_teachers_geometry(loss):
    """A linear student embedding trained by the relational term alone (ce_weight 0) brings its term under a fifth."""
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    teacher = torch.relu(x @ torch.randn(8, 12))
    head, y = torch.nn.Linear(8, 5), torch.zeros(16, dtype=torch.long)
    loss.ce_weight = 0.0
    opt = torch.optim.Adam(head.parameters(), lr=0.03)
    before = _loss_value(loss, head(x), teacher, y).item()
    for _ in range(300):
        opt.zero_grad()
        _loss_value(loss, head(x), teacher, y).backward()
        opt.step()
    after = _loss_value(loss, head(x), teacher, y).item()
    assert after < 0.2 * before, (before, after)


def ref_nce(scores: np.ndarray, n_data: int, eps: float = 1e-7) -> float:
    """CRD's Eq. 18 as the reference code computes it, in probability space: column 0 the positive."""
    b, m = scores.shape[0], scores.shape[1] - 1
    pn = 1.0 / n_data
    total = 0.0
    for i in range(b):
        total += math.log(scores[i, 0] / (scores[i, 0] + m * pn + eps))
        for k in range(1, m + 1):
            total += math.log(m * pn / (scores[i, k] + m * pn + eps))
    return -total / b


def test_nce_loss_equals_the_reference():
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.01, 3.0, size=(4, 6))
    assert float(nce_loss(torch.tensor(np.log(scores)), 50)) == pytest.approx(ref_nce(scores, 50), rel=1e-12)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.sqrt((v * v).sum(axis=-1, keepdims=True))


def _crd_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, b = 20, 5
    table = torch.randn(n, 6, generator=g, dtype=torch.float64)
    index = torch.tensor([3, 7, 0, 12, 19])
    y = torch.tensor([0, 1, 2, 0, 1])
    student = ModelOutput(torch.randn(b, 3, generator=g, dtype=torch.float64),
                          {EMBEDDING: torch.randn(b, 4, generator=g, dtype=torch.float64)})
    teacher = ModelOutput(torch.zeros(b, 3, dtype=torch.float64), {EMBEDDING: table[index]}, bank=TensorBank(table),
                          index=index)
    return table, index, y, student, teacher


def test_crd_equals_the_reference_and_updates_its_student_memory():
    """Value (Z from the first batch, both anchors, CE) and the momentum update of the student memory, recomputed
    in numpy from the loss's own parameters and the negatives it draws (torch.randint after the same seed)."""
    table, index, y, student, teacher = _crd_setup()
    torch.manual_seed(1)
    loss = CRDLoss(weight=0.8, feat_dim=3, negatives=7, temperature=0.5, momentum=0.3)
    loss.bind(student, teacher)
    loss.double()
    ws, bs = loss.embed_s.weight.detach().numpy(), loss.embed_s.bias.detach().numpy()
    wt, bt = loss.embed_t.weight.detach().numpy(), loss.embed_t.bias.detach().numpy()
    memory = loss.memory.clone().numpy()
    torch.manual_seed(5)
    out = loss(student, y, teacher, Progress())
    torch.manual_seed(5)
    drawn = torch.randint(0, 20, (7,)).numpy()

    fs, ft, tab, idx = student.features[EMBEDDING].numpy(), teacher.features[EMBEDDING].numpy(), table.numpy(), \
        index.numpy()
    vs, vt = _normalize(fs @ ws.T + bs), _normalize(ft @ wt.T + bt)
    t_neg = _normalize(tab[drawn] @ wt.T + bt)
    out_s = np.array([[math.exp(vs[i] @ c / 0.5) for c in [vt[i], *t_neg]] for i in range(5)])
    out_t = np.array([[math.exp(vt[i] @ c / 0.5) for c in [memory[idx[i]], *memory[drawn]]] for i in range(5)])
    z_s, z_t = out_s.mean() * 20, out_t.mean() * 20
    ce = F.cross_entropy(student.logits, y).item()
    ls, lt = ref_nce(out_s / z_s, 20), ref_nce(out_t / z_t, 20)
    assert float(out.terms["student_anchor"]) == pytest.approx(ls, rel=1e-10)
    assert float(out.terms["teacher_anchor"]) == pytest.approx(lt, rel=1e-10)
    assert out.total.item() == pytest.approx(ce + 0.8 * (ls + lt), rel=1e-10)
    assert loss.log_z.numpy() == pytest.approx([math.log(z_s), math.log(z_t)], rel=1e-12)
    expected = memory.copy()
    expected[idx] = _normalize(0.3 * memory[idx] + 0.7 * vs)
    np.testing.assert_allclose(loss.memory.numpy(), expected, rtol=1e-12, atol=1e-15)
    z_before = loss.log_z.clone()
    loss(student, y, teacher, Progress())  # Z is set once, by the first batch
    assert torch.equal(loss.log_z, z_before)


def test_crd_state_is_in_its_state_dict_and_restores_exactly():
    table, index, y, student, teacher = _crd_setup(2)
    torch.manual_seed(0)
    loss = CRDLoss(feat_dim=3, negatives=5)
    loss.bind(student, teacher)
    loss.double()
    loss(student, y, teacher)
    state = loss.state_dict()
    assert {"memory", "log_z", "embed_s.weight", "embed_t.weight"} <= set(state)
    torch.manual_seed(9)  # another initialisation, overwritten by the state
    other = CRDLoss(feat_dim=3, negatives=5)
    other.bind(student, teacher)
    other.double()
    other.load_state_dict(state)
    torch.manual_seed(3)
    a = loss(student, y, teacher).total
    torch.manual_seed(3)
    b = other(student, y, teacher).total
    assert a.item() == b.item() and torch.equal(loss.memory, other.memory)


def test_crd_teaches_a_student_to_pick_its_own_samples_teacher_embedding():
    """Trained by the contrastive terms alone, a linear student's projection finds its own sample among the
    teacher's projections (nearest neighbour) far more often than before (chance: 1 in 64)."""
    torch.manual_seed(0)
    n = 64
    x = torch.randn(n, 8)
    table = torch.relu(x @ torch.randn(8, 12))
    head = torch.nn.Linear(8, 6)
    loss = CRDLoss(feat_dim=16, negatives=32, temperature=0.1, ce_weight=0.0)
    bank = TensorBank(table)

    def outputs(index):
        return (ModelOutput(torch.zeros(len(index), 3), {EMBEDDING: head(x[index])}),
                ModelOutput(torch.zeros(len(index), 3), {EMBEDDING: table[index]}, bank=bank, index=index))

    loss.bind(*outputs(torch.arange(4)))

    def retrieval() -> float:
        with torch.no_grad():
            vs = F.normalize(loss.embed_s(head(x)), dim=1)
            vt = F.normalize(loss.embed_t(table), dim=1)
            return float(((vs @ vt.t()).argmax(1) == torch.arange(n)).float().mean())

    before = retrieval()
    opt = torch.optim.Adam([*head.parameters(), *loss.parameters()], lr=0.01)
    y = torch.zeros(16, dtype=torch.long)
    for _ in range(60):
        for index in torch.randperm(n).split(16):
            opt.zero_grad()
            loss(*outputs(index)[:1], y, outputs(index)[1]).total.backward()
            opt.step()
    assert retrieval() > max(0.5, 4 * before), (before, retrieval())

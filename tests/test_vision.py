"""Lesson 05, beyond text: an image as a sequence of patches (ViT)."""
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from transformer_lib import Encoder, LayerConfig
from transformer_lib.plotting import plot_activations, plot_patches
from transformer_lib.vision import PatchEmbedding, image_to_patches

B, C, HI, WI, P, D = 2, 2, 6, 9, 3, 12


def test_patches_are_the_squares_row_by_row():
    images = torch.randn(B, C, HI, WI)
    patches = image_to_patches(images, P)
    assert patches.shape == (B, (HI // P) * (WI // P), C * P * P)
    cols = WI // P
    for n in range(patches.shape[1]):
        r, c = divmod(n, cols)
        square = images[:, :, r * P:(r + 1) * P, c * P:(c + 1) * P].reshape(B, -1)   # (B, C*p*p)
        assert torch.equal(patches[:, n], square)


def test_patches_equal_unfold():
    images = torch.randn(B, C, HI, WI)
    unfolded = F.unfold(images, kernel_size=P, stride=P).transpose(1, 2)   # (B, N, C*p*p)
    assert torch.equal(image_to_patches(images, P), unfolded)


@pytest.mark.parametrize("images, patch_size, error, words", [
    (torch.randn(6, 9), 3, ValueError, "image[None, None]"),
    (torch.randn(C, 6, 9), 3, ValueError, "image[None]"),
    (torch.randn(B, C, 6, 8), 3, ValueError, "divisible"),
    (torch.ones(B, C, 6, 9, dtype=torch.long), 3, TypeError, "float"),
    (torch.randn(B, C, 6, 9), 0, ValueError, "patch_size"),
])
def test_patches_reject_bad_input(images, patch_size, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        image_to_patches(images, patch_size)


@pytest.mark.parametrize("cls_token", [True, False])
def test_patch_embedding_is_projection_cls_and_positions(cls_token):
    torch.manual_seed(0)
    embed = PatchEmbedding(image_size=6, patch_size=P, d_model=D, channels=C, cls_token=cls_token)
    images = torch.randn(B, C, 6, 6)
    out = embed(images)
    N = (6 // P) ** 2
    assert out.shape == (B, N + cls_token, D)
    tokens = embed.proj(image_to_patches(images, P))                      # (B, N, D)
    if cls_token:
        tokens = torch.cat([embed.cls.expand(B, -1, -1), tokens], dim=1)
    assert torch.allclose(out, tokens + embed.pos.weight, atol=1e-6)
    if cls_token:                                                          # [CLS] is the same for every image
        assert torch.allclose(out[0, 0], out[1, 0])


def test_patch_embedding_feeds_the_encoder_and_rejects_wrong_images():
    torch.manual_seed(0)
    embed = PatchEmbedding(image_size=6, patch_size=P, d_model=D, channels=1)
    encoder = Encoder(2, LayerConfig(D, 3, 20)).eval()
    out = encoder(embed(torch.rand(B, 1, 6, 6)))
    assert out.shape == (B, 5, D) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\(B, 1, 6, 6\)"):
        embed(torch.rand(B, 1, 9, 9))
    with pytest.raises(ValueError, match="divisible"):
        PatchEmbedding(image_size=7, patch_size=P, d_model=D)


def test_plots_of_lesson_05_extras():
    fig = plot_activations()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3 + 2           # 3 curves + the two axis lines
    image = torch.zeros(8, 8)
    image[2:6, 2:6] = 1
    fig2 = plot_patches(image, 4)
    assert fig2.axes[1].images[0].get_array().shape == (4, 16)             # 4 patches of 16 pixels
    with pytest.raises(ValueError, match="divide"):
        plot_patches(image, 3)
    plt.close("all")

#!/usr/bin/env bash
# Set up, train the English and Chinese demo pipelines on the bundled corpora with the
# offline checkpoints, then classify a few sentences with each trained pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
for lang in en zh; do
    python -m spacy train "configs/${lang}_demo.cfg" --output "training/${lang}_demo"
done
python -m spacy_cls classify training/en_demo/model-best \
    "An absolute delight from start to finish." \
    "The battery died after two days and support never answered."
python -m spacy_cls classify training/zh_demo/model-best \
    "房间干净整洁，前台服务也很热情。" \
    "快递慢得要命，手机屏幕还有划痕，太失望了。"

"""Render the bundled transcripts to speech with espeak-ng (offline) for the quickstart.

    python examples/render_corpus.py OUT_DIR [--speed 160]

Writes
  OUT_DIR/train/NAME.wav + NAME.txt     a folder corpus (`speechsum synth --data OUT_DIR/train`)
  OUT_DIR/test/NAME.wav                 held-out recordings (different content from train)
  OUT_DIR/test.jsonl                    the test set: id, audio, transcript, query, style, summary
                                        (`speechsum eval --data OUT_DIR/test.jsonl`)

The transcripts in examples/transcripts/ were written for this project; the test references in
examples/transcripts/test/references.jsonl were written by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "transcripts"


def espeak(text: str, wav: Path, speed: int) -> None:
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(wav), text], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--speed", type=int, default=160, help="espeak-ng words per minute")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed: apt-get install -y espeak-ng", file=sys.stderr)
        return 1
    train, test = args.out / "train", args.out / "test"
    train.mkdir(parents=True, exist_ok=True)
    test.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "train").glob("*.txt")):
        text = src.read_text().strip()
        espeak(text, train / f"{src.stem}.wav", args.speed)
        (train / f"{src.stem}.txt").write_text(text + "\n")
    references = [
        json.loads(line) for line in (HERE / "test" / "references.jsonl").read_text().splitlines() if line.strip()
    ]
    with (args.out / "test.jsonl").open("w") as f:
        for ref in references:
            text = (HERE / "test" / f"{ref['id']}.txt").read_text().strip()
            espeak(text, test / f"{ref['id']}.wav", args.speed)
            row = {
                "id": ref["id"],
                "audio": f"test/{ref['id']}.wav",
                "transcript": text,
                "query": ref["query"],
                "style": ref["style"],
                "summary": ref["summary"],
            }
            f.write(json.dumps(row) + "\n")
    n_train = len(list(train.glob("*.wav")))
    print(
        f"rendered {n_train} training recordings to {train} and {len(references)} test rows to "
        f"{args.out / 'test.jsonl'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`w2v2-lite transcribe`: speech to text with a fine-tuned CTC release, with word times.

    w2v2-lite transcribe --model data/finetuned/tiny a.flac b.wav      # whole files
    w2v2-lite transcribe --model DIR --beam 50 --lm-from train.wrd a.flac
    w2v2-lite transcribe --model DIR --stream talk.wav                  # chunk at pauses, as it reads
    arecord -f S16_LE -r 16000 -c 1 | w2v2-lite transcribe --model DIR -   # standard input
    w2v2-lite transcribe --model DIR --mic                              # needs `sounddevice`

Each file (or each chunk of a stream) is decoded greedily, or with beam search and a word
n-gram LM built from the given transcripts (`decoding`); the decoded text is then
force-aligned to the same frames (`alignment`) for each word's start and end. A stream is
read in blocks and cut at pauses by the energy detector of `data.vad`; each chunk is
transcribed as soon as its pause is heard, and printed with its latency: the wall time
from reading the chunk's last sample to printing its transcript.

This module imports torch only when a command runs, so `w2v2-lite --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

    from .alignment import WordTiming
    from .data.tokenizer import CharTokenizer
    from .data.vad import SpeechChunk
    from .decoding import BeamSearchDecoder

STREAM_SAMPLE_RATE = 16_000  # what a stream must already be: the model's rate
PCM_BYTES = 2  # 16-bit samples
WAV_FORMAT_PCM, WAV_FORMAT_EXTENSIBLE = 1, 0xFFFE
WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)  # a data size that streaming writers put in the header
DEFAULT_LM_BEAM = 50
STDIN = "-"


class TranscribeError(ValueError):
    """A problem with the command's input; the message names the input and the fix."""


# ----------------------------------------------------------------- the transcriber
@dataclass(frozen=True)
class Transcript:
    """The text of one utterance and its words' times (seconds from the utterance's start)."""

    text: str
    words: list["WordTiming"]


class Transcriber:
    """A fine-tuned `Wav2Vec2ForCTC` and its decoder: waveform X (L,) -> `Transcript`."""

    def __init__(self, model: "nn.Module", tokenizer: "CharTokenizer | None" = None,
                 beam_decoder: "BeamSearchDecoder | None" = None, sample_rate: int = STREAM_SAMPLE_RATE) -> None:
        from .data.tokenizer import CharTokenizer

        self.model = model.eval()
        self.tokenizer = tokenizer or CharTokenizer()
        self.beam_decoder = beam_decoder
        self.seconds_per_frame = model.config.frame_stride / sample_rate  # 320 / 16000 = 20 ms

    @classmethod
    def from_release(cls, folder: str | os.PathLike, device: str = "cpu", beam_size: int = 0,
                     lm_transcripts: str | os.PathLike | None = None, lm_order: int = 3, lm_weight: float = 2.0,
                     word_score: float = 0.0) -> "Transcriber":
        """Load a `save_pretrained` folder of a fine-tuned CTC model; beam_size 0 decodes greedily.

        lm_transcripts: a .wrd file (one transcript per line) to build the word n-gram LM from.
        """
        from .data.tokenizer import CharTokenizer
        from .decoding import BeamSearchDecoder, NGramLM, read_transcripts
        from .pretrained import load_pretrained, read_release_config

        name = read_release_config(folder).get("model_class")
        if name != "Wav2Vec2ForCTC":
            raise TranscribeError(f"{folder} holds a {name}, not a fine-tuned Wav2Vec2ForCTC: transcribing needs a "
                                  "model with a CTC head; fine-tune this one first and give that release")
        try:
            model = load_pretrained(folder, device)
        except Exception as error:  # safetensors or torch on a damaged file
            raise TranscribeError(f"{folder}: cannot load the weights ({error}); the release is damaged or from "
                                  "another version: save it again with save_pretrained") from None
        tokenizer = CharTokenizer()
        if model.config.vocab_size != len(tokenizer):
            raise TranscribeError(f"{folder}: the model has {model.config.vocab_size} outputs but the character "
                                  f"tokenizer has {len(tokenizer)} symbols; it was fine-tuned with another vocabulary")
        beam_decoder = None
        if beam_size or lm_transcripts:
            lm = NGramLM.from_sentences(read_transcripts(lm_transcripts, tokenizer), lm_order) if lm_transcripts else None
            beam_decoder = BeamSearchDecoder(tokenizer, beam_size or DEFAULT_LM_BEAM, lm, lm_weight, word_score)
        return cls(model, tokenizer, beam_decoder)

    def __call__(self, waveform: "Tensor") -> Transcript:
        """waveform X (L,), normalised as `load_audio` does -> text and word times."""
        import torch

        from .alignment import align_words
        from .decoding import greedy_decode

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            output = self.model(waveform.reshape(1, -1).to(device))
        logits, lengths = output.logits.float().cpu(), output.output_lengths.cpu()  # (1, T, V), (1,)
        if self.beam_decoder is not None:
            text = self.beam_decoder(logits, lengths)[0]
        else:
            text = greedy_decode(logits, lengths, self.tokenizer)[0]
        log_probs = logits[0, :int(lengths[0])].log_softmax(dim=-1)  # (T, V)
        try:
            words = align_words(log_probs, text, self.tokenizer, self.seconds_per_frame)
        except ValueError:  # a beam-search text may need a `|` frame between words that its path skipped
            words = []
        return Transcript(text, words)


# ------------------------------------------------------------------ audio streams
def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (pipes return short reads)."""
    data = b""
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


def read_wav_header(stream: BinaryIO, name: str) -> tuple[int, int | None]:
    """Parse a WAV header after its 12-byte RIFF/WAVE prefix -> (channels, data bytes or None if unknown).

    Only 16-bit PCM at 16 kHz is accepted: a stream cannot be resampled before it ends.
    """
    channels = None
    while True:
        header = read_exactly(stream, 8)
        if len(header) < 8:
            raise TranscribeError(f"{name}: the WAV header ends before its data chunk; send a whole WAV stream or "
                                  "raw 16-bit 16 kHz mono PCM")
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"fmt ":
            fmt = read_exactly(stream, size + size % 2)
            audio_format, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
            if audio_format not in (WAV_FORMAT_PCM, WAV_FORMAT_EXTENSIBLE) or bits != 8 * PCM_BYTES \
                    or rate != STREAM_SAMPLE_RATE:
                raise TranscribeError(f"{name}: the WAV stream is {bits}-bit format {audio_format} at {rate} Hz; "
                                      "streaming needs 16-bit PCM at 16 kHz: convert it first, e.g. "
                                      "`sox in.wav -t wav -r 16000 -b 16 -e signed -`")
        elif chunk_id == b"data":
            if channels is None:
                raise TranscribeError(f"{name}: the WAV stream has no fmt chunk before its data")
            return channels, None if size in WAV_SIZE_UNKNOWN else size
        else:
            read_exactly(stream, size + size % 2)  # LIST and other metadata


def pcm_blocks(stream: BinaryIO, block_samples: int, name: str) -> Iterator["np.ndarray"]:
    """Blocks (n,) float32 in [-1, 1] from a WAV stream or, without a RIFF header, raw 16-bit 16 kHz mono PCM.

    Channels are averaged; a WAV data chunk of known size is read no further.
    """
    import numpy as np

    start = read_exactly(stream, 12)
    channels, remaining = 1, None
    if start[:4] == b"RIFF" and start[8:12] == b"WAVE":
        channels, remaining = read_wav_header(stream, name)
        start = b""
    frame_bytes = PCM_BYTES * channels
    pending = start
    while True:
        size = block_samples * frame_bytes - len(pending)
        if remaining is not None:
            size = max(0, min(size, remaining))
        data = read_exactly(stream, size) if size else b""
        if remaining is not None:
            remaining -= len(data)
        pending += data
        usable = len(pending) // frame_bytes * frame_bytes
        if usable:
            samples = np.frombuffer(pending[:usable], dtype="<i2").astype(np.float32) / 32768
            yield samples.reshape(-1, channels).mean(axis=1)
        pending = pending[usable:]
        if not data:
            return


def file_blocks(path: str, block_samples: int) -> Iterator["np.ndarray"]:
    """Blocks (n,) float32 of a 16 kHz audio file, read as they are needed; .raw files as raw PCM.

    Raises `AudioError` (naming the file and the fix) for a missing, empty or undecodable file.
    """
    import soundfile

    from .data.audio import AUDIO_EXTENSIONS, RAW_EXTENSIONS, AudioError

    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS + RAW_EXTENSIONS:
        raise AudioError(f"{path}: unsupported audio format {suffix!r}; convert it to one of {AUDIO_EXTENSIONS} "
                         "at 16 kHz (e.g. `sox in.mp3 -r 16000 out.wav`), or give raw 16-bit 16 kHz PCM as .raw")
    if not Path(path).is_file():
        raise AudioError(f"{path}: no such file; check the path")
    if suffix in RAW_EXTENSIONS:
        with open(path, "rb") as stream:
            yield from pcm_blocks(stream, block_samples, path)
        return
    try:
        sound = soundfile.SoundFile(path)
    except soundfile.LibsndfileError as error:
        raise AudioError(f"{path}: cannot decode the audio ({error}); the file is empty, corrupt or not really "
                         f"{suffix}: re-create it, or check it with `soxi {path}`") from None
    with sound:
        if sound.samplerate != STREAM_SAMPLE_RATE:
            raise TranscribeError(f"{path}: {sound.samplerate} Hz; streaming needs 16 kHz audio: convert it first "
                                  f"(`sox {path} -r 16000 out.wav`), or transcribe it without --stream")
        for block in sound.blocks(blocksize=block_samples, dtype="float32", always_2d=True):
            yield block.mean(axis=1)


def microphone_blocks(block_samples: int) -> Iterator["np.ndarray"]:
    """Blocks (n,) float32 from the default microphone at 16 kHz mono, until Ctrl-C."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: the module is there but PortAudio is not
        raise TranscribeError(f"--mic needs the sounddevice package and PortAudio ({error}); install them with "
                              "`pip install sounddevice` and `sudo apt-get install libportaudio2`, or pipe audio "
                              "in: `arecord -f S16_LE -r 16000 -c 1 | w2v2-lite transcribe --model DIR -`") from None
    print("listening on the default microphone; Ctrl-C to stop", file=sys.stderr)
    with sounddevice.InputStream(samplerate=STREAM_SAMPLE_RATE, channels=1, dtype="float32",
                                 blocksize=block_samples) as stream:
        try:
            while True:
                block, _ = stream.read(block_samples)
                yield block[:, 0].copy()
        except KeyboardInterrupt:
            return


def paced(blocks: Iterator["np.ndarray"]) -> Iterator["np.ndarray"]:
    """Hand out blocks no faster than real time, as if a microphone were recording them."""
    start, samples = time.perf_counter(), 0
    for block in blocks:
        samples += len(block)
        time.sleep(max(0.0, start + samples / STREAM_SAMPLE_RATE - time.perf_counter()))
        yield block


# ---------------------------------------------------------------------- printing
def format_words(words: list["WordTiming"], offset: float = 0.0) -> list[str]:
    """One line per word: start and end in seconds, then the word."""
    return [f"  {word.start + offset:7.2f} {word.end + offset:7.2f}  {word.word}" for word in words]


def words_json(words: list["WordTiming"], offset: float = 0.0) -> list[dict]:
    return [asdict(word) | {"start": round(word.start + offset, 3), "end": round(word.end + offset, 3),
                            "score": round(word.score, 4)} for word in words]


def transcribe_file(transcriber: Transcriber, path: str, as_json: bool) -> None:
    """Print one whole file's transcript and word times; raises AudioError for a bad file."""
    from .data.audio import load_audio

    waveform = load_audio(path, raw_sample_rate=STREAM_SAMPLE_RATE)
    transcript = transcriber(waveform)
    seconds = waveform.numel() / STREAM_SAMPLE_RATE
    if as_json:
        print(json.dumps({"file": path, "duration": round(seconds, 3), "text": transcript.text,
                          "words": words_json(transcript.words)}))
    else:
        print("\n".join([f"{path}: {transcript.text}"] + format_words(transcript.words)))


def transcribe_stream(transcriber: Transcriber, blocks: Iterator["np.ndarray"], name: str, as_json: bool) -> None:
    """Cut a stream of blocks at pauses and print each chunk as soon as it ends."""
    import torch

    from .data.audio import normalize
    from .data.vad import SpeechChunker

    chunker = SpeechChunker()
    read_times: deque[tuple[int, float]] = deque()  # (samples read so far, wall time) after each block

    def emit(chunk: "SpeechChunk") -> None:
        while len(read_times) > 1 and read_times[0][0] < chunk.end:  # the block that held the chunk's last sample
            read_times.popleft()
        computing = time.perf_counter()
        transcript = transcriber(normalize(torch.from_numpy(chunk.audio)))
        done = time.perf_counter()
        latency_ms, model_ms = 1000 * (done - read_times[0][1]), 1000 * (done - computing)
        if as_json:
            print(json.dumps({"file": name, "start": round(chunk.start_s, 3), "end": round(chunk.end_s, 3),
                              "text": transcript.text, "latency_ms": round(latency_ms, 1),
                              "model_ms": round(model_ms, 1), "words": words_json(transcript.words, chunk.start_s)}))
        else:
            lines = [f"[{chunk.start_s:7.2f} - {chunk.end_s:7.2f}] {transcript.text}  "
                     f"(latency {latency_ms:.0f} ms, model {model_ms:.0f} ms)"]
            print("\n".join(lines + format_words(transcript.words, chunk.start_s)))
        sys.stdout.flush()

    for index, block in enumerate(blocks):  # the first block has been read: the stream's header is good
        if index == 0:
            transcriber(torch.zeros(STREAM_SAMPLE_RATE))  # the first call is slow (kernel set-up), not a latency
        read_times.append((chunker.samples_seen + len(block), time.perf_counter()))
        for chunk in chunker.push(block):
            emit(chunk)
    for chunk in chunker.flush():
        emit(chunk)


# ------------------------------------------------------------------- the command
def run_transcribe(args: argparse.Namespace) -> int:
    from .data.audio import AudioError

    def fail(message: str) -> int:
        print(f"w2v2-lite transcribe: {message}", file=sys.stderr)
        return 2

    if not args.files and not args.mic:
        return fail("give audio files to transcribe, `-` for standard input, or --mic")
    if args.mic and args.files:
        return fail("--mic takes no files; run it alone")
    if args.beam < 0:
        return fail(f"--beam must be 0 (greedy) or a positive beam size, got {args.beam}")
    try:
        transcriber = Transcriber.from_release(args.model, args.device, args.beam, args.lm_from, args.lm_order,
                                               args.lm_weight, args.word_score)
    except (OSError, ValueError, ImportError) as error:  # not a release, not CTC, bad transcripts, no flashlight
        return fail(str(error))
    block_samples = max(1, round(args.block_ms * STREAM_SAMPLE_RATE / 1000))
    failed = 0
    try:
        for path in args.files or ["microphone"]:
            try:
                if args.mic:
                    transcribe_stream(transcriber, microphone_blocks(block_samples), path, args.json)
                elif path == STDIN or args.stream:
                    if path == STDIN:
                        path, blocks = "standard input", pcm_blocks(sys.stdin.buffer, block_samples, "standard input")
                    else:
                        blocks = file_blocks(path, block_samples)
                    transcribe_stream(transcriber, paced(blocks) if args.realtime else blocks, path, args.json)
                else:
                    transcribe_file(transcriber, path, args.json)
            except (AudioError, TranscribeError) as error:  # one bad file: say so, go on with the others
                failed += 1
                fail(str(error))
    except KeyboardInterrupt:
        return 130
    return 2 if failed else 0


def add_transcribe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transcribe", help="speech to text with word times, from files, standard input or a microphone",
        description="Transcribe audio with a fine-tuned CTC release (a save_pretrained folder). Each file's text "
        "is printed with one line per word: start and end in seconds, then the word. With --stream (or `-` for "
        "standard input) the audio is read in blocks, cut at pauses, and each chunk printed as soon as it ends, "
        "with its time span and latency.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="audio files (wav, flac, ogg; .raw = 16-bit 16 kHz PCM), or - for standard input "
                        "(raw 16-bit 16 kHz mono PCM or a WAV stream)")
    parser.add_argument("--model", required=True, metavar="DIR", help="release folder of a fine-tuned CTC model")
    parser.add_argument("--beam", type=int, default=0, metavar="N",
                        help=f"beam search with N prefixes (default: greedy; {DEFAULT_LM_BEAM} with --lm-from)")
    parser.add_argument("--lm-from", metavar="WRD", help="build a word n-gram LM for the beam search from these "
                        "transcripts (one per line, e.g. a manifest's .wrd file); words outside them cannot be output")
    parser.add_argument("--lm-order", type=int, default=3, help="n of the n-gram LM (default 3)")
    parser.add_argument("--lm-weight", type=float, default=2.0, help="weight of the LM's log-probability (default 2)")
    parser.add_argument("--word-score", type=float, default=0.0, help="score added per word (default 0)")
    parser.add_argument("--stream", action="store_true", help="read files in blocks and cut them at pauses")
    parser.add_argument("--realtime", action="store_true", help="with --stream: read no faster than real time")
    parser.add_argument("--mic", action="store_true", help="stream from the microphone (needs sounddevice)")
    parser.add_argument("--block-ms", type=float, default=100.0, help="stream block length (default 100 ms)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file or chunk")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.set_defaults(run=run_transcribe)

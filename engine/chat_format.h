// Chat formats of the common model families, chosen from tokenizer_config.json's chat_template
// (or by name), rendered turn by turn so that a conversation's KV cache can be extended.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace resa {

enum class ChatFormat { kRaw, kLlama2, kMistral, kChatML, kLlama3, kZephyr };

std::string_view chat_format_name(ChatFormat f);  // "raw", "llama2", "mistral", ...
std::optional<ChatFormat> parse_chat_format(std::string_view name);
// Recognises a Jinja chat_template by its markers ([INST] with/without <<SYS>>, <|im_start|>,
// <|start_header_id|>, <|user|>). Returns kRaw when nothing matches.
ChatFormat detect_chat_format(std::string_view chat_template);

struct ChatTokens {
  std::string bos = "<s>";
  std::string eos = "</s>";
};

// Text (with special-token strings, for Tokenizer::encode_with_specials) of one user turn and
// the assistant prefix that follows it. `first` is true for the conversation's first turn (it
// carries BOS and the system prompt where the format has one). Rendered turns concatenate to
// what the family's chat_template renders for the whole conversation.
std::string render_user_turn(ChatFormat f, const ChatTokens& t, std::string_view system,
                             std::string_view user, bool first);
// Text appended after a generated answer when it ended by a stop token that the model emitted
// itself (e.g. "\n" after ChatML's <|im_end|>), so the next turn starts where the template
// expects. Empty for most formats.
std::string render_after_answer(ChatFormat f, const ChatTokens& t);
// Stop strings of the format ("<|im_end|>", "<|eot_id|>", "</s>"), to add to the stop ids.
std::vector<std::string> chat_stop_strings(ChatFormat f, const ChatTokens& t);

}  // namespace resa

// Where the bundled demo model is: the default of resa-chat, resa-cli and resa-eval when no
// model is given (issue 4: the demo model is the programs' default).
#pragma once

#include <QString>
#include <QStringList>

namespace resa::app {

// Folders that may hold the default model, in the order they are tried: $RESA_DEMO_MODEL, the
// installed package (<prefix>/share/resa-chat/models/demo), the source tree next to a build
// folder (resources/models/demo), then the small committed test model (until the demo model
// exists in a checkout).
QStringList defaultModelCandidates();

// The first candidate that holds config.json, or an empty string.
QString defaultModelDir();

// The model folder a program runs: `given` (its --model) when not empty, else the default
// model; empty, with `error` saying where it looked, when there is none.
QString modelDirOrDefault(const QString& given, QString* error);

}  // namespace resa::app

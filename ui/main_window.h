// ReSA Chat's main window: conversations on the left, the chat with its composer in the middle,
// live statistics and the document heat map on the right; the model, the decoding mode, Compare
// and Settings in the toolbar; the model and its backend in the status bar. It talks to the
// engine only through EngineThread's non-blocking calls and the worker's queued signals.
#pragma once

#include <QHash>
#include <QMainWindow>
#include <QPointer>
#include <QSet>
#include <QTimer>

#include <memory>
#include <optional>

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"
#include "app/lib/engine_worker.h"
#include "app/lib/settings.h"

class QAction;
class QActionGroup;
class QLabel;
class QMessageBox;
class QMimeData;
class QProgressBar;
class QStackedWidget;
class QTabWidget;

namespace resa::ui {

class Banner;
class ChatView;
class Composer;
class CompareView;
class ContextGauge;
class ConversationList;
class DocumentPanel;
class EmptyState;
class MessageWidget;
class OverflowDialog;
class SettingsDialog;
class StatsPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  MainWindow(app::ConversationStore* store, app::Settings* settings, app::EngineThread* engine,
             QWidget* parent = nullptr);
  ~MainWindow() override;

  // Loads the last model, else the bundled demo model, else shows the first-run state. (The
  // last open conversation is already open: the constructor restores it.)
  void start();
  void loadModel(const app::ModelSource& source);
  // Returns an error message, or "" when `dir` looks like a model folder we can load.
  static QString validateModelFolder(const QString& dir);

  // The user actions, callable from tests and the screenshot driver.
  void newConversation();
  void openConversation(qint64 id);
  void sendMessage(const QString& text);
  void stopGenerating();
  void regenerate(qint64 answerId);
  void editMessage(qint64 userMessageId);
  // What the Attach button and a drop on the window do with the chosen files: each is read and
  // attached to the conversation, or refused with a message in the window naming it.
  bool attachFile(const QString& path, QString* error = nullptr);
  int attachFiles(const QStringList& paths);  // how many were attached
  void setMode(DecodeMode mode);
  void setHeatMapVisible(bool on);
  void selectAnswer(qint64 answerId);
  CompareView* showCompare();
  SettingsDialog* settingsDialog();  // built on demand, not shown
  void openSettings();
  // Help ▸ About: the version, the backend in use and the loaded model. Shown without blocking;
  // the dialog deletes itself when closed.
  QString aboutText() const;
  QMessageBox* showAbout();

  // State, for tests.
  bool isGenerating() const { return activeRequest_ != 0; }
  bool isModelLoaded() const { return modelLoaded_; }
  qint64 currentConversation() const { return conversationId_; }
  // Characters of request text (documents, turns) the window still holds for answers it started:
  // only the one being generated needs them.
  qsizetype retainedRequestChars() const;
  DecodeMode mode() const;
  DecodeMode lastRequestMode() const { return lastRequestMode_; }
  ChatView* chatView() const { return chat_; }
  Composer* composer() const { return composer_; }
  StatsPanel* statsPanel() const { return stats_; }
  DocumentPanel* documentPanel() const { return documents_; }
  EmptyState* emptyState() const { return empty_; }
  bool isShowingEmptyState() const;
  // The context-overflow question while it is open (it does not block), else null.
  OverflowDialog* overflowDialog() const;
  ConversationList* conversationList() const { return sidebar_; }
  Banner* banner() const { return banner_; }
  QAction* modeAction(DecodeMode mode) const;
  const app::ModelInfo& modelInfo() const { return modelInfo_; }

  // Token count shown for an attachment before the model has tokenised it.
  int estimateTokens(const QString& text) const;
  static QString readDocument(const QString& path, QString* error);

 signals:
  void answerFinished(qint64 messageId);
  void modelReady();
  void comparisonFinished();

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;
  bool eventFilter(QObject* watched, QEvent* e) override;
  void keyPressEvent(QKeyEvent* e) override;

 private:
  struct Pending {
    app::GenerateRequest request;
    QList<qint64> messageIds;  // history + the user message, as the heat spans index them
    qint64 answerId = 0;
    // What a cancelled overflow question puts back: the user message this send added (0 for
    // Regenerate), the answer a Regenerate replaced, the messages an Edit-and-resend replaced.
    qint64 newUserId = 0;
    qint64 replacedAnswerId = 0;
    QList<app::MessageRecord> replacedMessages;
  };

  void buildActions();
  void buildLayout();
  void connectEngine();
  void ensureConversation(const QString& titleHint);
  void reloadDocuments();
  void requestTokenCounts(const QList<app::DocumentRecord>& docs);
  void reloadMessages();
  void startAnswer(qint64 userId, const QString& userText, const QList<MessageWidget*>& before,
                   Pending undo);
  void answerOverflow(Pending p, std::optional<app::OverflowPolicy> policy);
  // The send (or Regenerate) of p is undone: the conversation as it was, notice flashed.
  void undoSend(const Pending& p, const QString& notice);
  bool acceptsDrop(const QMimeData* mime) const;
  void setBusy(bool busy);
  void updateCenter();
  void updateStatus();
  void showError(const QString& message, const QString& action = {});
  void flash(const QString& message, int ms = 5000);
  void applyHeatFor(qint64 answerId);
  QList<qint64> historyIdsBefore(qint64 userId) const;
  void runCompare();
  app::GenerationSettings currentGeneration() const;
  void chooseModelFolder();
  void chooseDocuments();

  void onModelLoading(const QString& what, double fraction);
  void onModelLoaded(const app::ModelInfo& info);
  void onModelLoadFailed(const QString& message);
  void onEngineFailed(const QString& message);
  void onGenerationStarted(const app::GenerationStart& s);
  void onPrefill(qint64 id, int done, int total);
  void onToken(qint64 id, const QString& text);
  void onStepStats(qint64 id, const app::LiveStats& s);
  void applyLiveStats();
  void onRectification(qint64 id, const app::RectificationInfo& r);
  void onOverflow(const app::ContextOverflow& o);
  void onFinished(qint64 id, const QString& text, const app::AnswerStats& stats);
  void onError(qint64 id, const QString& message);

  app::ConversationStore* store_;
  app::Settings* settings_;
  app::EngineThread* engine_;

  ConversationList* sidebar_ = nullptr;
  ChatView* chat_ = nullptr;
  EmptyState* empty_ = nullptr;
  QStackedWidget* center_ = nullptr;
  Banner* banner_ = nullptr;
  Composer* composer_ = nullptr;
  QTabWidget* side_ = nullptr;
  StatsPanel* stats_ = nullptr;
  DocumentPanel* documents_ = nullptr;
  QPointer<CompareView> compare_;
  QPointer<SettingsDialog> settingsDialog_;
  QPointer<OverflowDialog> overflowDialog_;

  QAction* openModelAction_ = nullptr;
  QAction* tinyAction_ = nullptr;
  QAction* attachAction_ = nullptr;
  QAction* heatAction_ = nullptr;
  QAction* compareAction_ = nullptr;
  QAction* settingsAction_ = nullptr;
  QAction* panelAction_ = nullptr;
  QAction* aboutAction_ = nullptr;
  QActionGroup* modeGroup_ = nullptr;
  QHash<int, QAction*> modeActions_;

  QLabel* modelLabel_ = nullptr;
  QLabel* backendLabel_ = nullptr;
  QProgressBar* loadProgress_ = nullptr;
  QLabel* loadLabel_ = nullptr;
  ContextGauge* ctxGauge_ = nullptr;
  QLabel* ctxLabel_ = nullptr;
  QLabel* memLabel_ = nullptr;
  QLabel* flashLabel_ = nullptr;
  QTimer flashTimer_;
  // Live statistics arrive with every token chunk; the panel, its charts and the status bar take
  // them at most every kLiveUpdateMs, all at once: each update repaints them, and repainting
  // them 30 times a second kept the event loop from answering within 50 ms (issue 3).
  QTimer liveTimer_;
  std::optional<app::LiveStats> pendingLive_;  // the latest, with every step since the last

  // Attachments counted by the loaded model's tokenizer (the rest show an estimate, "≈").
  QSet<qint64> countedDocs_;
  QHash<qint64, qint64> pendingCounts_;  // request id -> document id
  bool modelLoaded_ = false;
  bool modelLoading_ = false;
  app::ModelInfo modelInfo_;
  app::ModelSource modelSource_;
  qint64 conversationId_ = 0;
  qint64 activeRequest_ = 0;
  qint64 compareRequest_ = 0;
  qint64 editingId_ = 0;
  qint64 selectedAnswer_ = 0;
  DecodeMode lastRequestMode_ = DecodeMode::kResa;
  QHash<qint64, Pending> pending_;
  QPointer<MessageWidget> streaming_;
  std::unique_ptr<app::AnswerRecorder> recorder_;
  int ctxUsed_ = 0;
};

}  // namespace resa::ui

// The sidebar: New chat, search over titles and message text (the store's FTS5 index), and the
// conversations newest first with rename / delete (confirmed) / export in a context menu.
#pragma once

#include <QAbstractListModel>
#include <QDateTime>
#include <QTimer>
#include <QWidget>

#include "app/lib/conversation_store.h"

class QLineEdit;
class QListView;
class QLabel;

namespace resa::ui {

// One row per conversation (or per search hit). Owned and changed on the GUI thread only.
class ConversationListModel : public QAbstractListModel {
  Q_OBJECT
 public:
  enum Role { IdRole = Qt::UserRole + 1, SnippetRole, UpdatedRole, MessageCountRole };
  struct Row {
    qint64 id = 0;
    QString title;
    QString snippet;  // a search hit's matched text, else empty
    QDateTime updated;
    int messageCount = 0;
  };

  using QAbstractListModel::QAbstractListModel;
  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  void setRows(const QList<Row>& rows);
  void renameRow(qint64 id, const QString& title);
  int rowOf(qint64 id) const;
  const Row& row(int i) const { return rows_[i]; }

 private:
  QList<Row> rows_;
};

class ConversationList : public QWidget {
  Q_OBJECT
 public:
  explicit ConversationList(app::ConversationStore* store, QWidget* parent = nullptr);

  void reload();  // re-reads the store (keeps the search and the selection)
  void setCurrent(qint64 id);
  qint64 current() const { return current_; }
  void setSearch(const QString& text);
  ConversationListModel* model() const { return model_; }
  QListView* view() const { return view_; }

  bool renameConversation(qint64 id, const QString& title);
  // Asks first unless `confirmed`; returns whether it was deleted.
  bool deleteConversation(qint64 id, bool confirmed = false);

 signals:
  void conversationSelected(qint64 id);
  void newConversationRequested();
  void conversationDeleted(qint64 id);
  void conversationRenamed(qint64 id, const QString& title);

 private:
  void showMenu(const QPoint& pos);
  void exportConversation(qint64 id, bool json);

  app::ConversationStore* store_;
  ConversationListModel* model_;
  QListView* view_;
  QLineEdit* search_;
  QLabel* emptyHint_;
  QTimer searchTimer_;
  qint64 current_ = 0;
};

}  // namespace resa::ui
